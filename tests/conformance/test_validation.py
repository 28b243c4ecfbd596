"""What the server accepts in a Lease body: validation (422), decoding (400), media types (415),
field validation (Strict/Warn/Ignore), MicroTime parsing, and which spec fields it keeps."""

from __future__ import annotations

import pytest
from _kube import (
    GROUP,
    Json,
    KubeTarget,
    assert_json,
    lease_body,
    leases_path,
    status_body,
)

DECODE = 'Lease in version "v1" cannot be handled as a Lease: '
UNRECOGNIZED = (
    "the object provided is unrecognized (must be of type Lease): couldn't get version/kind; "
)
MICRO_LAYOUT = "2006-01-02T15:04:05.000000Z07:00"


def _invalid(name: str, *causes: tuple[str, str]) -> Json:
    """422 Invalid from Lease validation: kind ``Lease``, one cause per ``(field, message)``."""
    errors = [f"{field}: {message}" for field, message in causes]
    summary = errors[0] if len(errors) == 1 else "[" + ", ".join(errors) + "]"
    return status_body(
        422,
        "Invalid",
        f'Lease.coordination.k8s.io "{name}" is invalid: {summary}',
        {
            "name": name,
            "group": GROUP,
            "kind": "Lease",
            "causes": [
                {"reason": "FieldValueInvalid", "message": message, "field": field}
                for field, message in causes
            ],
        },
    )


@pytest.mark.parametrize(
    ("spec", "causes"),
    [
        (
            {"leaseDurationSeconds": 0},
            [("spec.leaseDurationSeconds", "Invalid value: 0: must be greater than 0")],
        ),
        (
            {"leaseDurationSeconds": -1},
            [("spec.leaseDurationSeconds", "Invalid value: -1: must be greater than 0")],
        ),
        (
            {"leaseTransitions": -1},
            [("spec.leaseTransitions", "Invalid value: -1: must be greater than or equal to 0")],
        ),
        (
            {"leaseDurationSeconds": 0, "leaseTransitions": -1},
            [
                ("spec.leaseDurationSeconds", "Invalid value: 0: must be greater than 0"),
                ("spec.leaseTransitions", "Invalid value: -1: must be greater than or equal to 0"),
            ],
        ),
    ],
    ids=["duration-0", "duration-negative", "transitions-negative", "two-errors"],
)
async def test_invalid_spec_on_create_is_422_with_causes(
    kube: KubeTarget, lease_name: str, spec: Json, causes: list[tuple[str, str]]
) -> None:
    resp = await kube.raw().create_lease(lease_name, spec)
    assert resp.status == 422
    assert resp.content_type == "application/json"
    assert resp.json() == _invalid(lease_name, *causes)


async def test_invalid_name_on_create_is_422_naming_the_dns_rule(kube: KubeTarget) -> None:
    name = "Not_A_DNS_Name"
    rule = (
        f'Invalid value: "{name}": a lowercase RFC 1123 subdomain must consist of lower case '
        "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric "
        "character (e.g. 'example.com', regex used for validation is "
        "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
    )
    resp = await kube.raw().create_lease(name)
    assert resp.status == 422
    assert resp.json() == _invalid(name, ("metadata.name", rule))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            '{"metadata":{"name":"gt-m"}',
            UNRECOGNIZED
            + 'json parse error: unexpected end of JSON input ({"metadata":{"name":"gt-m"})',
        ),
        (
            "",
            UNRECOGNIZED + "json parse error: unexpected end of JSON input (<empty>)",
        ),
        (
            '{"metadata":{"name":"gt-m"}} trailing',
            # The body is quoted up to its 30th byte.
            UNRECOGNIZED + "json parse error: invalid character 't' after top-level value "
            '({"metadata":{"name":"gt-m"}} t ...)',
        ),
        (
            '{"metadata":{"name":"gt-m"},"spec":{"leaseDurationSeconds":"15"}}',
            DECODE + "json: cannot unmarshal string into Go struct field "
            "LeaseSpec.spec.leaseDurationSeconds of type int32",
        ),
        (
            '{"metadata":{"name":"gt-m"},"spec":{"leaseDurationSeconds":1.5}}',
            DECODE + "json: cannot unmarshal number 1.5 into Go struct field "
            "LeaseSpec.spec.leaseDurationSeconds of type int32",
        ),
        (
            '{"metadata":{"name":"gt-m"},"spec":{"leaseTransitions":99999999999}}',
            DECODE + "json: cannot unmarshal number 99999999999 into Go struct field "
            "LeaseSpec.spec.leaseTransitions of type int32",
        ),
        (
            '{"metadata":{"name":"gt-m"},"spec":{"holderIdentity":5}}',
            DECODE + "json: cannot unmarshal number into Go struct field "
            "LeaseSpec.spec.holderIdentity of type string",
        ),
        (
            '{"metadata":{"name":"gt-m"},"spec":{"leaseTransitions":true}}',
            DECODE + "json: cannot unmarshal bool into Go struct field "
            "LeaseSpec.spec.leaseTransitions of type int32",
        ),
        (
            '{"metadata":{"name":"gt-m"},"spec":[]}',
            DECODE
            + "json: cannot unmarshal array into Go struct field Lease.spec of type v1.LeaseSpec",
        ),
        (
            '{"metadata":"gt-m","spec":{}}',
            DECODE + "json: cannot unmarshal string into Go struct field Lease.metadata "
            "of type v1.ObjectMeta",
        ),
        (
            '{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"gt-m"}}',
            'ConfigMap in version "v1" cannot be handled as a Lease: converting (v1.ConfigMap) '
            "to (coordination.Lease): unknown conversion",
        ),
        (
            '{"kind":"Lease","apiVersion":"coordination.k8s.io/v1beta1","metadata":{"name":"gt-m"}}',
            "the API version in the data (coordination.k8s.io/v1beta1) does not match the "
            "expected API version (coordination.k8s.io/v1)",
        ),
    ],
    ids=[
        "truncated-json",
        "empty-body",
        "trailing-garbage",
        "string-for-int",
        "fraction-for-int",
        "int32-overflow",
        "number-for-string",
        "bool-for-int",
        "array-for-spec",
        "string-for-metadata",
        "configmap",
        "other-api-version",
    ],
)
async def test_undecodable_body_is_400_bad_request(
    kube: KubeTarget, body: str, message: str
) -> None:
    resp = await kube.raw().request("POST", leases_path(), body)
    assert resp.status == 400
    assert resp.content_type == "application/json"
    assert resp.json() == status_body(400, "BadRequest", message)
    # Go's encoder escapes <, > and & inside strings.
    assert b"<" not in resp.body
    assert b">" not in resp.body


async def test_body_with_kind_but_no_api_version_is_accepted(
    kube: KubeTarget, lease_name: str
) -> None:
    body = {"kind": "Lease", "metadata": {"name": lease_name}}
    resp = await kube.raw().request("POST", leases_path(), body)
    assert resp.status == 201
    assert_json(resp.json(), lease_body(lease_name, {}))


async def test_post_with_text_plain_is_415(kube: KubeTarget, lease_name: str) -> None:
    body = {"metadata": {"name": lease_name}, "spec": {}}
    resp = await kube.raw().request("POST", leases_path(), body, content_type="text/plain")
    assert resp.status == 415
    assert resp.json() == status_body(
        415,
        "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted media types include: "
        "application/json, application/yaml, application/vnd.kubernetes.protobuf",
    )


async def test_patch_with_plain_json_content_type_is_415(kube: KubeTarget, lease_name: str) -> None:
    raw = kube.raw()
    assert (await raw.create_lease(lease_name)).status == 201
    resp = await raw.request(
        "PATCH", leases_path(name=lease_name), {"spec": {}}, content_type="application/json"
    )
    assert resp.status == 415
    assert resp.json() == status_body(
        415, "UnsupportedMediaType", "415: Unsupported Media Type", {}
    )


async def test_post_accepts_yaml(kube: KubeTarget, lease_name: str) -> None:
    body = f"metadata:\n  name: {lease_name}\nspec:\n  holderIdentity: from-yaml\n"
    resp = await kube.raw().request("POST", leases_path(), body, content_type="application/yaml")
    assert resp.status == 201
    assert resp.content_type == "application/json"
    assert_json(resp.json(), lease_body(lease_name, {"holderIdentity": "from-yaml"}))


# -- field validation -----------------------------------------------------------------------

UNKNOWN_FIELDS_BODY = (
    '{"metadata":{"name":"%s"},'
    '"spec":{"foo":1,"holderIdentity":"a","holderIdentity":"b","zzz":{"a":1}},"bar":2}'
)


async def test_unknown_and_duplicate_fields_warn_by_default(
    kube: KubeTarget, lease_name: str
) -> None:
    resp = await kube.raw().request("POST", leases_path(), UNKNOWN_FIELDS_BODY % lease_name)
    assert resp.status == 201
    # One Warning header per problem, in the order of the body (top-level fields last).
    assert resp.warnings == [
        '299 - "unknown field \\"spec.foo\\""',
        '299 - "duplicate field \\"spec.holderIdentity\\""',
        '299 - "unknown field \\"spec.zzz\\""',
        '299 - "unknown field \\"bar\\""',
    ]
    # The last duplicate wins; unknown fields are dropped.
    assert_json(resp.json(), lease_body(lease_name, {"holderIdentity": "b"}))


async def test_field_validation_warn_names_unknown_metadata_fields(
    kube: KubeTarget, lease_name: str
) -> None:
    body = {"metadata": {"name": lease_name, "foo": 3}, "spec": {"holderIdentity": "a"}}
    resp = await kube.raw().request("POST", leases_path(), body, params={"fieldValidation": "Warn"})
    assert resp.status == 201
    assert resp.warnings == ['299 - "unknown field \\"metadata.foo\\""']


async def test_field_validation_ignore_drops_unknown_fields_silently(
    kube: KubeTarget, lease_name: str
) -> None:
    resp = await kube.raw().request(
        "POST",
        leases_path(),
        UNKNOWN_FIELDS_BODY % lease_name,
        params={"fieldValidation": "Ignore"},
    )
    assert resp.status == 201
    assert resp.warnings == []
    assert "Warning" not in resp.headers
    assert_json(resp.json(), lease_body(lease_name, {"holderIdentity": "b"}))


async def test_field_validation_strict_rejects_unknown_and_duplicate_fields(
    kube: KubeTarget, lease_name: str
) -> None:
    raw = kube.raw()
    resp = await raw.request(
        "POST",
        leases_path(),
        UNKNOWN_FIELDS_BODY % lease_name,
        params={"fieldValidation": "Strict"},
    )
    assert resp.status == 400
    assert resp.warnings == []
    assert resp.json() == status_body(
        400,
        "BadRequest",
        DECODE + 'strict decoding error: unknown field "spec.foo", duplicate field '
        '"spec.holderIdentity", unknown field "spec.zzz", unknown field "bar"',
    )
    assert (await raw.get(leases_path(name=lease_name))).status == 404


async def test_field_validation_strict_accepts_a_clean_body(
    kube: KubeTarget, lease_name: str
) -> None:
    body = {"metadata": {"name": lease_name}, "spec": {"holderIdentity": "a"}}
    resp = await kube.raw().request(
        "POST", leases_path(), body, params={"fieldValidation": "Strict"}
    )
    assert resp.status == 201
    assert resp.warnings == []


async def test_field_validation_strict_applies_to_put(kube: KubeTarget, lease_name: str) -> None:
    raw = kube.raw()
    current = (await raw.create_lease(lease_name, {"holderIdentity": "a"})).json()
    current["spec"]["foo"] = 1
    resp = await raw.request(
        "PUT", leases_path(name=lease_name), current, params={"fieldValidation": "Strict"}
    )
    assert resp.status == 400
    assert resp.json()["message"] == DECODE + 'strict decoding error: unknown field "spec.foo"'
    warned = await raw.request("PUT", leases_path(name=lease_name), current)
    assert warned.status == 200
    assert warned.warnings == ['299 - "unknown field \\"spec.foo\\""']


async def test_unsupported_field_validation_value_is_422(kube: KubeTarget, lease_name: str) -> None:
    body = {"metadata": {"name": lease_name}, "spec": {}}
    resp = await kube.raw().request(
        "POST", leases_path(), body, params={"fieldValidation": "Bogus"}
    )
    assert resp.status == 422
    message = 'Unsupported value: "Bogus": supported values: "", "Ignore", "Strict", "Warn"'
    assert resp.json() == status_body(
        422,
        "Invalid",
        f'CreateOptions.meta.k8s.io "" is invalid: fieldValidation: {message}',
        {
            "group": "meta.k8s.io",
            "kind": "CreateOptions",
            "causes": [
                {"reason": "FieldValueNotSupported", "message": message, "field": "fieldValidation"}
            ],
        },
    )


# -- coordinated leader election fields (CoordinatedLeaderElection gate off by default) --------


@pytest.mark.parametrize("validation", [None, "Strict"], ids=["default", "strict"])
async def test_preferred_holder_and_strategy_are_dropped_silently(
    kube: KubeTarget, lease_name: str, validation: str | None
) -> None:
    spec = {"holderIdentity": "a", "preferredHolder": "b", "strategy": "Foo"}
    params = {"fieldValidation": validation} if validation else {}
    body = {"metadata": {"name": lease_name}, "spec": spec}
    resp = await kube.raw().request("POST", leases_path(), body, params=params)
    assert resp.status == 201
    assert resp.warnings == []
    # Known fields, so managedFields lists them, but the gate drops their values.
    assert_json(
        resp.json(),
        lease_body(lease_name, {"holderIdentity": "a"}, fields=list(spec)),
    )


# -- which spec values are kept ---------------------------------------------------------------


async def test_empty_spec_is_returned_as_empty_object_without_managed_fields(
    kube: KubeTarget, lease_name: str
) -> None:
    resp = await kube.raw().create_lease(lease_name, {})
    assert resp.status == 201
    assert_json(resp.json(), lease_body(lease_name, {}))
    assert "managedFields" not in resp.json()["metadata"]


async def test_null_fields_are_omitted_and_explicit_zero_values_kept(
    kube: KubeTarget, lease_name: str
) -> None:
    spec = {
        "holderIdentity": "",
        "leaseDurationSeconds": None,
        "acquireTime": None,
        "renewTime": None,
        "leaseTransitions": 0,
    }
    resp = await kube.raw().create_lease(lease_name, spec)
    assert resp.status == 201
    assert_json(resp.json(), lease_body(lease_name, {"holderIdentity": "", "leaseTransitions": 0}))


async def test_lease_without_spec_gets_an_empty_spec(kube: KubeTarget, lease_name: str) -> None:
    resp = await kube.raw().request("POST", leases_path(), {"metadata": {"name": lease_name}})
    assert resp.status == 201
    assert_json(resp.json(), lease_body(lease_name, {}))


# -- MicroTime --------------------------------------------------------------------------------


def _bad_time(sent: str, detail: str) -> str:
    return DECODE + f'parsing time "{sent}" as "{MICRO_LAYOUT}": {detail}'


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("2024-05-06T07:08:09.123456Z", "2024-05-06T07:08:09.123456Z"),
        ("2024-05-06T07:08:09.000000Z", "2024-05-06T07:08:09.000000Z"),
        ("2024-05-06T07:08:09.123456+02:00", "2024-05-06T05:08:09.123456Z"),
        ("2024-05-06T07:08:09.123456-05:30", "2024-05-06T12:38:09.123456Z"),
    ],
    ids=["6-digits-utc", "6-zero-digits", "offset-east", "offset-west"],
)
async def test_microtime_with_six_digits_is_stored_in_utc(
    kube: KubeTarget, lease_name: str, sent: str, stored: str
) -> None:
    resp = await kube.raw().create_lease(lease_name, {"acquireTime": sent, "renewTime": sent})
    assert resp.status == 201
    assert resp.json()["spec"] == {"acquireTime": stored, "renewTime": stored}


@pytest.mark.parametrize(
    ("sent", "detail"),
    [
        ('"2024-05-06T07:08:09Z"', 'cannot parse "Z" as ".000000"'),
        ('"2024-05-06T07:08:09.123Z"', 'cannot parse ".123Z" as ".000000"'),
        ('"2024-05-06T07:08:09.123456789Z"', 'cannot parse "789Z" as "Z07:00"'),
        ('"2024-05-06T07:08:09.5+02:00"', 'cannot parse ".5+02:00" as ".000000"'),
        ('"2024-05-06T07:08:09+02:00"', 'cannot parse "+02:00" as ".000000"'),
        ('"2024-05-06T07:08:09.1234567-05:30"', 'cannot parse "7-05:30" as "Z07:00"'),
        ('"2024-05-06T07:08:09.123456z"', 'cannot parse "z" as "Z07:00"'),
        ('"2024-05-06 07:08:09.123456Z"', 'cannot parse " 07:08:09.123456Z" as "T"'),
        ('"yesterday"', 'cannot parse "yesterday" as "2006"'),
        ('"2024-01-01"', 'cannot parse "" as "T"'),
        ('""', 'cannot parse "" as "2006"'),
    ],
    ids=[
        "0-digits",
        "3-digits",
        "9-digits",
        "1-digit-offset",
        "0-digits-offset",
        "7-digits-offset",
        "lowercase-z",
        "space-separator",
        "word",
        "date-only",
        "empty",
    ],
)
async def test_microtime_not_in_the_six_digit_layout_is_400(
    kube: KubeTarget, lease_name: str, sent: str, detail: str
) -> None:
    body = f'{{"metadata":{{"name":"{lease_name}"}},"spec":{{"renewTime":{sent}}}}}'
    resp = await kube.raw().request("POST", leases_path(), body)
    assert resp.status == 400
    assert resp.json() == status_body(400, "BadRequest", _bad_time(sent.strip('"'), detail))


@pytest.mark.parametrize(("sent", "json_type"), [("12345", "number"), ("true", "bool")])
async def test_microtime_of_another_json_type_is_400(
    kube: KubeTarget, lease_name: str, sent: str, json_type: str
) -> None:
    body = f'{{"metadata":{{"name":"{lease_name}"}},"spec":{{"acquireTime":{sent}}}}}'
    resp = await kube.raw().request("POST", leases_path(), body)
    assert resp.status == 400
    assert resp.json() == status_body(
        400,
        "BadRequest",
        DECODE + f"json: cannot unmarshal {json_type} into Go struct field "
        "LeaseSpec.spec.acquireTime of type string",
    )
