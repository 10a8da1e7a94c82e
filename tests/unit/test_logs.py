"""The error log's formatters (fastsock/logs.py): a record's request id and route, and what a
record already carries (another library's extras) left as it is."""
import json
import logging

from fastsock.logs import JSONFormatter, TextFormatter


def test_a_records_own_request_and_route_extras_are_left_as_they_are():
    record = logging.LogRecord("django.request", logging.ERROR, __file__, 1, "failed", (), None)
    record.request = theirs = object()          # Django's extra={"request": request}
    record.route = "/theirs"
    assert "[- /theirs] failed" in TextFormatter().format(record)
    assert record.request is theirs
    entry = json.loads(JSONFormatter().format(record))
    assert entry["route"] == "/theirs" and "request_id" not in entry


def test_outside_a_request_a_record_says_nothing_of_one():
    record = logging.LogRecord("myapp", logging.INFO, __file__, 1, "hello %s", ("x",), None)
    assert TextFormatter().format(record).endswith(" INFO hello x")
    entry = json.loads(JSONFormatter().format(record))
    assert entry["level"] == "INFO" and "request_id" not in entry and "route" not in entry
