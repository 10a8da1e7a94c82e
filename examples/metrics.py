"""Application metrics: define them with prometheus_client as usual; /metrics shows them summed
over every worker. `fastsock examples.metrics:app --workers 2`"""
from prometheus_client import Counter, Gauge, Histogram

from fastsock import App

app = App()

ORDERS = Counter("shop_orders", "Orders placed.", ["kind"])
CART_SIZE = Histogram("shop_cart_items", "Items per order.", buckets=(1, 2, 5, 10))
LAST_ORDER = Gauge("shop_last_order_items", "Items in the last order this worker took.")


@app.post("/orders/{kind}")
def order(req, kind):
    items = int(req.query.get("items", "1"))
    ORDERS.labels(kind=kind).inc()
    CART_SIZE.observe(items)
    LAST_ORDER.set(items)
    return {"kind": kind, "items": items}
