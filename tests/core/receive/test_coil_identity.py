"""A coil file is used only on scans of the coil it was measured with."""

from types import SimpleNamespace

from gadgets.core.receive.coil_identity import CoilIdentity


def _header(labels, field_T=7.0, channels=None):
    info = SimpleNamespace(
        receiverChannels=channels if channels is not None else len(labels),
        coilLabel=[SimpleNamespace(coilNumber=i, coilName=f" {n} ") for i, n in enumerate(labels)],
        systemFieldStrength_T=field_T,
    )
    return SimpleNamespace(acquisitionSystemInformation=info)


def test_a_scan_of_the_coil_matches_and_others_are_told_why_not():
    coil = CoilIdentity(8, tuple(f"HEAD8:{i}" for i in range(8)), 7.0)
    same = CoilIdentity.from_header(_header([f"HEAD8:{i}" for i in range(8)]))
    assert same == coil and coil.mismatch(same) == ""
    other = CoilIdentity.from_header(_header([f"OTHER:{i}" for i in range(8)]))
    assert coil.mismatch(other) == (
        "coil labels differ (channel 0: scan 'OTHER:0', coil file 'HEAD8:0')"
    )
    assert "16 channels, the coil file's coil has 8" in coil.mismatch(
        CoilIdentity.from_header(_header([f"HEAD8:{i}" for i in range(16)]))
    )
    at_3t = CoilIdentity.from_header(_header([f"HEAD8:{i}" for i in range(8)], field_T=2.89))
    assert coil.mismatch(at_3t) == "field 2.89 T, the coil file was measured at 7 T"
    # what the header does not say is not held against it
    assert coil.mismatch(CoilIdentity(8)) == ""


def test_identity_round_trips_through_a_coil_file():
    coil = CoilIdentity(2, ("A", "B"), 3.0)
    assert CoilIdentity.from_dict({"measured_with": coil.to_dict()}) == coil
    assert CoilIdentity.from_dict({}) is None
    try:
        CoilIdentity.from_dict({"measured_with": {"labels": []}}, "x.json")
    except ValueError as exc:
        assert "x.json: measured_with needs channels" in str(exc)
    else:
        raise AssertionError("a measured_with without channels was accepted")
