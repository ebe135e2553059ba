"""The Test form's pure parts: the form body read back, values typed by the schema (or left as typed so
that the endpoint names the column), the RRS request, the Service address. The call itself runs against a
real scorer in tests/scorer/test_console_test_form.py."""

from __future__ import annotations

import pytest

from kstudio_console import testform

SCHEMA = [
    {"name": "bill_length_mm", "type": "number"},
    {"name": "year", "type": "integer"},
    {"name": "island", "type": "string"},
    {"name": "tagged", "type": "boolean"},
]


def test_the_form_body_gives_the_columns_and_the_key() -> None:
    body = b"col%3Abill_length_mm=39.1&col%3Aisland=Torgersen+Is&col%3Ayear=&key=+k3y+&other=x"
    assert testform.read_form(body) == (
        {"bill_length_mm": "39.1", "island": "Torgersen Is", "year": ""},
        "k3y",
    )
    with pytest.raises(ValueError, match="larger than 65536 bytes"):
        testform.read_form(b"x" * (testform.MAX_FORM_BYTES + 1))


@pytest.mark.parametrize(
    ("value", "column_type", "expected"),
    [
        ("39.1", "number", 39.1),
        (" 7 ", "integer", 7),
        ("", "number", None),
        ("  ", "string", None),
        ("true", "boolean", True),
        ("FALSE", "boolean", False),
        ("Dream", "string", "Dream"),
        ("abc", "number", "abc"),  # sent as typed: the endpoint's 422 names the column
        ("3.5", "integer", "3.5"),
        ("maybe", "boolean", "maybe"),
    ],
)
def test_values_are_typed_by_the_schema_or_left_as_typed(
    value: str, column_type: str, expected: object
) -> None:
    assert testform.typed(value, column_type) == expected


def test_the_request_has_every_schema_column_in_order() -> None:
    request = testform.score_request(SCHEMA, {"island": "Dream", "bill_length_mm": "40", "extra": "ignored"})
    assert request == {
        "Inputs": {"input1": [{"bill_length_mm": 40.0, "year": None, "island": "Dream", "tagged": None}]},
        "GlobalParameters": {},
    }


def test_the_service_address_is_its_cluster_ip_and_port() -> None:
    service = {"spec": {"clusterIP": "10.96.4.7", "ports": [{"name": "http", "port": 80}]}}
    assert testform.service_address(service) == "http://10.96.4.7:80"
    assert (
        testform.service_address({"spec": {"clusterIP": "fd00::5", "ports": [{"port": 80}]}})
        == "http://[fd00::5]:80"
    )
    assert testform.service_address({"spec": {"clusterIP": "None", "ports": [{"port": 80}]}}) is None
    assert testform.service_address(None) is None


def test_an_answer_shows_its_scored_rows_or_its_body_as_it_came() -> None:
    ok = testform.TestAnswer(200, {"Results": {"output1": [{"Scored Labels": "Adelie"}]}})
    assert ok.rows == [{"Scored Labels": "Adelie"}]
    refused = testform.TestAnswer(422, {"detail": "column bill_length_mm: not a number"})
    assert refused.rows == [] and '"detail": "column bill_length_mm: not a number"' in refused.shown
    assert testform.TestAnswer(502, "Bad Gateway").shown == "Bad Gateway"
