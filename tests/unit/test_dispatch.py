"""The server's dispatch without sockets: reserved routes, request ids and the access-log
decision, proxies, recycling — each layer only when the Config asks for it."""
import subprocess
import sys
import threading

from fastsock import App
from fastsock._message import Dispatcher, RouteId
from fastsock._parser import RequestParser
from fastsock._requestids import ECHO_ID
from fastsock.config import Config
from fastsock import dispatch as dispatch_mod
from fastsock.forwarded import Proxies
from tests.support.waiting import wait_until


def request(raw: bytes, client=("10.0.0.9", 1234)):
    (req,) = RequestParser().feed(raw)
    req.client = client
    return req


def get(path: bytes, *headers: bytes):
    return request(b"GET " + path + b" HTTP/1.1\r\nHost: h\r\n" + b"".join(
        h + b"\r\n" for h in headers) + b"\r\n")


def build(app=None, ready=lambda: True, owned=(), ready_check=None, **config):
    calls = []
    app = app or App()

    @app.get("/healthz")                      # the reserved route wins unless owned
    def shadow(req):
        calls.append("app")
        return "the app's"

    @app.get("/hello")
    def hello(req):
        calls.append("hello")
        return "hi"
    logged, drained = [], []
    main, metrics = dispatch_mod.build(
        app, Config(**config), ready=ready, exposition=lambda req: "metrics text",
        access_log=(lambda *a: logged.append(a)) if config.get("access_log", "off") != "off"
        else None,
        proxies=Proxies(config["forwarded_allow_ips"]) if config.get("forwarded_allow_ips")
        else None,
        max_requests=config.get("max_requests", 0), retire=lambda: drained.append(1),
        owned=owned, ready_check=ready_check)
    return main, metrics, calls, logged, drained


def test_reserved_routes_are_answered_without_the_app():
    main, metrics, calls, _, _ = build()
    req = get(b"/healthz")
    assert main(req).status == 200 and calls == [] and req.route_id == RouteId.ROUTE_HEALTHZ
    req = get(b"/readyz")
    assert main(req).status == 200 and req.route_id == RouteId.ROUTE_READYZ
    req = get(b"/metrics")
    assert main(req) == "metrics text" and req.route_id == RouteId.ROUTE_METRICS
    assert metrics is None
    assert main(get(b"/hello")) == "hi" and calls == ["hello"]


def test_readiness_follows_the_callable_and_metrics_can_move_to_their_own_port():
    state = {"ready": False}
    main, metrics, _, _, _ = build(ready=lambda: state["ready"], metrics_port=9100)
    assert main(get(b"/readyz")).status == 503
    state["ready"] = True
    assert main(get(b"/readyz")).status == 200
    assert main(get(b"/metrics")).status == 404          # not on the main port any more
    req = get(b"/metrics")
    assert metrics(req) == "metrics text" and req.route_id == RouteId.ROUTE_METRICS
    assert metrics(get(b"/hello")).status == 404


def test_switched_off_reserved_routes_fall_through_to_the_app():
    main, _, calls, _, _ = build(healthz_path="")
    assert main(get(b"/healthz")) == "the app's" and calls == ["app"]


def test_the_app_and_the_id_layer_are_called_from_c():
    # a Dispatcher is called by the connection through its vtable, not as a Python callable
    # (~110 instructions per request): what build() gives the loop is one, with and without
    # the access log (whose id layer calls the app's dispatcher from C in turn)
    for access_log in ("off", "json"):
        main, _, calls, _, _ = build(access_log=access_log)
        assert isinstance(main, Dispatcher)
        req = get(b"/hello")
        assert main.dispatch(req) == "hi" and main(get(b"/hello")) == "hi"
        assert calls == ["hello", "hello"] and req.route_id >= RouteId.FIRST_APP_ROUTE


def test_request_ids_and_the_access_log_decision():
    main, _, _, logged, _ = build(access_log="json")
    req = get(b"/hello", b"X-Request-ID: from-client")
    main(req)
    assert req.request_id == "from-client"
    assert req.response_headers is ECHO_ID      # the connection echoes it (test_requestids)
    assert req.on_complete is not None
    req = get(b"/hello")
    main(req)
    assert req.request_id and req.response_headers is ECHO_ID
    health = get(b"/healthz")
    main(health)
    assert health.on_complete is None and health.response_headers is None
    main, _, _, _, _ = build(access_log="json", log_health=True)
    health = get(b"/healthz")
    main(health)
    assert health.on_complete is not None


def test_no_layer_when_nothing_asks_for_one():
    main, _, _, _, _ = build()
    req = get(b"/hello")
    main(req)
    assert req.on_complete is None and req.response_headers is None


def test_trusted_proxies_name_the_client():
    main, _, _, _, _ = build(forwarded_allow_ips="10.0.0.0/8")
    req = get(b"/hello", b"X-Forwarded-For: 203.0.113.5, 10.1.1.1")
    main(req)
    assert req.client == ("203.0.113.5", 0)
    req = request(b"GET /hello HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n",
                  client=("198.51.100.1", 5))
    main(req)
    assert req.client == ("198.51.100.1", 5)            # not a trusted peer: ignored


def test_recycling_drains_after_max_requests():
    main, _, _, _, drained = build(max_requests=3)
    for _ in range(2):
        main(get(b"/hello"))
    assert drained == []
    main(get(b"/hello"))
    assert drained == [1]


def test_the_app_never_imports_the_server():
    code = ("import sys, fastsock, fastsock.app; "
            "assert 'fastsock.server' not in sys.modules, 'server imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_malformed_json_is_a_400_not_a_500():
    app = App()

    @app.post("/items")
    def items(req):
        return {"got": req.json()}
    dispatch = app.dispatcher()
    ok = request(b"POST /items HTTP/1.1\r\nHost: h\r\nContent-Length: 7\r\n\r\n{\"a\":1}")
    assert dispatch(ok) == {"got": {"a": 1}}
    for body in (b"{nope", b"\xff\xfe"):
        bad = request(b"POST /items HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n%s"
                      % (len(body), body))
        response = dispatch(bad)
        assert response.status == 400 and b"malformed JSON" in response.body


def test_an_int_parameter_too_long_for_int_is_no_match():
    app = App()
    app.get("/users/{user_id:int}")(lambda req, user_id: {"id": user_id})
    dispatch = app.dispatcher()
    assert dispatch(get(b"/users/42")) == {"id": 42}
    assert dispatch(get(b"/users/" + b"9" * 5000)).status == 404


def test_forwarded_allow_ips_star_and_bad_entries():
    import pytest
    main, _, _, _, _ = build(forwarded_allow_ips="*")
    req = get(b"/hello", b"X-Forwarded-For: 203.0.113.5, 10.1.1.1")
    main(req)
    assert req.client == ("203.0.113.5", 0)
    with pytest.raises(ValueError, match="not an address"):
        Config(forwarded_allow_ips="10.0.0.0/8, bogus")


def test_a_failing_metrics_exposition_costs_one_500_on_either_port():
    from fastsock._conn import Connection
    from fastsock._context import Context

    def exposition(req):
        raise RuntimeError("exposition exploded")
    for metrics_port in (0, 9100):
        config = Config(metrics_port=metrics_port)
        main, metrics = dispatch_mod.build(
            App(), config, ready=lambda: True, exposition=exposition, access_log=None,
            proxies=None, max_requests=0, retire=lambda: None)
        ctx = Context(config.limits())
        conn = Connection(ctx, metrics if metrics_port else main)
        out = conn.feed(b"GET /metrics HTTP/1.1\r\nHost: h\r\n\r\n"
                        b"GET /metrics HTTP/1.1\r\nHost: h\r\n\r\n")
        assert out.count(b"HTTP/1.1 500 ") == 2 and conn.state_name == "idle"


def test_a_reserved_path_the_app_owns_is_the_apps():
    main, _, calls, _, _ = build(owned={"/healthz"})
    assert main(get(b"/healthz")) == "the app's" and calls == ["app"]
    assert main(get(b"/readyz")).status == 200 and calls == ["app"]


def test_the_route_tables_say_which_reserved_paths_the_app_owns():
    from fastsock.adapters.owned import owned_paths, reserved_paths
    paths = reserved_paths(Config())
    assert set(paths) == {"/healthz", "/readyz", "/metrics"}
    assert set(reserved_paths(Config(metrics_port=9100, readyz_path=""))) == {"/healthz"}

    native = App()
    native.get("/healthz")(lambda req: "mine")
    native.get("/{name}")(lambda req: "any")            # a pattern owns nothing
    assert owned_paths(native, paths) == {"/healthz"}

    from flask import Flask
    flask = Flask("t")
    flask.get("/metrics/", endpoint="mine")(lambda: "mine")     # with the slash: the path
    flask.get("/<path:p>", endpoint="any")(lambda p: p)         # a catch-all owns nothing
    assert owned_paths(flask, paths) == {"/metrics"}

    from fastapi import FastAPI
    from starlette.applications import Starlette
    from starlette.routing import Mount, Route
    api = FastAPI()
    api.get("/readyz")(lambda: "mine")
    api.get("/items/{item}")(lambda item: item)
    api.mount("/metrics", Starlette())                  # a mounted app at the path
    assert owned_paths(api, paths) == {"/readyz", "/metrics"}
    nested = Starlette(routes=[Mount("/api", routes=[Route("/healthz", lambda r: None)])])
    assert owned_paths(nested, paths) == set()          # /api/healthz is not /healthz

    assert owned_paths(lambda environ, start_response: [], paths) == set()


def test_the_apps_ready_check_after_the_servers_state():
    state = {"server": True, "app": True, "asked": 0}

    def check():
        state["asked"] += 1
        if state["app"] == "raise":
            raise RuntimeError("no database")
        return state["app"]
    ready = dispatch_mod.with_ready_check(lambda: state["server"], check, every=0.0)
    wait_until(lambda: ready() is True, what="the check's first answer")
    state["app"] = False
    wait_until(lambda: ready() is False, what="the check's false")
    state["app"] = "raise"
    asked = state["asked"]
    wait_until(lambda: ready() is False and state["asked"] > asked, what="the check raising")
    state["app"], state["server"] = True, False
    wait_until(lambda: not ready.__self__.running, what="the last check ended")
    asked = state["asked"]
    assert ready() is False and state["asked"] == asked     # draining: the app not asked
    kept = dispatch_mod.with_ready_check(lambda: True, check, every=3600.0)
    wait_until(lambda: kept() is True, what="the kept check's answer")
    assert kept() is True and state["asked"] == asked + 1


def test_a_blocking_ready_check_never_holds_the_caller():
    """The app's check blocks (a database call that hangs): readiness answers at once, not
    ready, and the check runs once, not once per probe."""
    release, calls = threading.Event(), []

    def check():
        calls.append(1)
        release.wait(30)
        return True
    ready = dispatch_mod.with_ready_check(lambda: True, check, every=0.0)
    for _ in range(50):
        assert ready() is False         # (answered while the check blocks)
    wait_until(lambda: calls, what="the check started")
    assert len(calls) == 1
    release.set()
    wait_until(lambda: ready() is True, what="ready once the check answers")


def test_a_ready_check_is_answered_on_readyz():
    flag = {"ok": False}
    main, _, _, _, _ = build(ready_check=lambda: flag["ok"])
    assert main(get(b"/readyz")).status == 503


def test_ipv4_mapped_peers_are_judged_as_their_ipv4_address():
    # a dual-stack listener (--host ::) sees IPv4 proxies as ::ffff:a.b.c.d
    proxies = Proxies("127.0.0.1, 10.0.0.0/8")
    assert proxies.trusts("::ffff:127.0.0.1") and proxies.trusts("::ffff:10.9.8.7")
    assert not proxies.trusts("::ffff:192.0.2.1") and not proxies.trusts("::1")
    assert Proxies("::1").trusts("::1") and not Proxies("::1").trusts("::ffff:127.0.0.1")
    # an IPv6 network names mapped addresses as they are written too
    assert Proxies("::ffff:0:0/96").trusts("::ffff:192.0.2.1")
