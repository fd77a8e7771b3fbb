"""The approval's pure parts: who waits, how a paused run is found, what a decision records."""

from __future__ import annotations

from ctcd.config import CtcdConfig
from tasks import approval


def _manual(cfg: CtcdConfig) -> CtcdConfig:
    gates = cfg.gates.model_copy(update={"model": cfg.gates.model.model_copy(update={"approval": "manual"})})
    return cfg.model_copy(update={"gates": gates})


def test_only_a_blessed_candidate_waits_and_only_with_manual_approval(default_config):
    assert default_config.gates.model.approval == "auto"
    assert not approval.needs_approval(default_config, blessed=True)
    manual = _manual(default_config)
    assert approval.needs_approval(manual, blessed=True)
    assert not approval.needs_approval(manual, blessed=False)


def test_a_decision_names_who_and_why_in_the_tag_and_the_promotion_reason():
    ok = approval.decided("bank", "4", True, " alice ", " slices look fine ")
    assert ok.summary() == "version 4 approved by alice: slices look fine"
    assert approval.version_tag(ok) == {"ctcd.approval": "approved by alice: slices look fine"}
    assert approval.promotion_reason("drift: gate passed", ok) == (
        "drift: gate passed; approved by alice: slices look fine"
    )
    no = approval.decided("bank", "4", False, "", "")
    assert (no.approved, no.actor, no.verdict()) == (False, "unknown", "rejected by unknown")


def test_a_time_out_is_a_rejection_with_that_reason():
    late = approval.timed_out("bank", "4", 60)
    assert (late.approved, late.timed_out, late.actor) == (False, True, approval.TIMEOUT_ACTOR)
    assert "no decision within 60 s" in late.reason


def test_the_paused_run_is_found_by_model_and_version():
    assert approval.run_tags("bank", "4") == ["ctcd.model:bank", "ctcd.version:4"]
    assert approval.pause_key("bank", "4") != approval.pause_key("bank", "40")
    assert "ctcd approve 4" in approval.prompt("bank", "4", "gate passed")
