"""The vLLM engine against steerscope's own Hugging Face hooks, on the embedded default model (fp32, greedy).

Runs for real where vLLM is installed (`make test` runs this file in `.venv-vllm`, built by `make vllm-env`);
in an environment without vLLM it is skipped here, and `test_vllm_plan.py` checks the missing-vLLM error.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("vllm", reason="vLLM is not installed here; `make test` runs this file in .venv-vllm")

import steerscope as ss  # noqa: E402
from steerscope.vllm import Steer, VllmEngine, VllmUnsupportedError  # noqa: E402

pytestmark = pytest.mark.embedded

PROMPTS = ["The capital of France is", "I went to the park today and", "My favourite food is"]
NEW = 12


@pytest.fixture(scope="module")
def lm():
    torch.set_num_threads(1)
    return ss.load_model("default")


@pytest.fixture(scope="module")
def engine():
    # one in-process vLLM engine at a time (closing one tears down vLLM's process-wide state): this module's
    # engine is closed before test_vllm_runs.py starts its own
    with VllmEngine("default", max_model_len=1024) as running:
        yield running


def _direction(seed: int, norm: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(576, generator=g)
    return v / v.norm() * norm


def hf_tokens(lm, prompt: str, additions: list[tuple[dict, float, str]], new: int = NEW) -> list[int]:
    """Greedy tokens from Hugging Face `generate` with steerscope's hooks (one `ss.add` per vector)."""
    batch = lm.tokenize([prompt])
    from contextlib import ExitStack

    with ExitStack() as stack, torch.no_grad():
        for vectors, coefficient, positions in additions:
            if coefficient != 0:
                stack.enter_context(ss.add(lm, vectors, coefficient=coefficient, positions=positions))
        out = lm.model.generate(**batch, max_new_tokens=new, do_sample=False, pad_token_id=lm.tokenizer.pad_token_id)
    return out[0, batch["input_ids"].shape[1] :].tolist()


def test_mixed_batch_equals_hf_hooks(lm, engine):
    """One vLLM call, every request steered its own way (sites, positions, signs, 0, two vectors, ActAdd rows,
    unsteered), each equal token for token to the same request through HF with steerscope's hooks."""
    a, b = _direction(1, 40.0), _direction(2, 30.0)
    front = torch.stack([_direction(3, 40.0), _direction(4, 40.0)])  # a position-wise [2, d] vector
    cases = [
        [],
        [({"resid_pre.10": a}, 1.0, "all")],
        [({"resid_pre.10": a}, -1.0, "all")],
        [({"resid_pre.10": a}, 0.0, "all")],
        [({"resid_post.4": a}, 1.5, "prompt")],
        [({"attn_out.6": b}, 2.0, "generated")],
        [({"mlp_out.8": b}, -2.0, "last_prompt")],
        [({"resid_mid.12": a}, 1.0, "all")],
        [({"embed": b}, 0.5, "all")],
        [({"final": a}, 2.0, "all")],
        [({"resid_pre.10": a}, 1.0, "all"), ({"resid_pre.10": b, "mlp_out.3": b}, -1.0, "generated")],
        [({"resid_pre.2": front}, 1.0, "front")],
    ]
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(len(cases))]
    steering = [[Steer(vecs, c, pos) for vecs, c, pos in case] for case in cases]
    got = engine.generate(prompts, steering=steering, max_tokens=NEW)
    unsteered = {p: hf_tokens(lm, p, []) for p in PROMPTS}
    changed = 0
    for prompt, case, completion in zip(prompts, cases, got, strict=True):
        want = hf_tokens(lm, prompt, case)
        assert completion.token_ids == want, (case, completion.text, lm.tokenizer.decode(want))
        changed += want != unsteered[prompt]
    assert changed >= 9  # the vectors are strong enough to change most completions: the comparison means something


def test_steering_vector_files_and_positions_as_hf(lm, engine, tmp_path):
    """A saved SteeringVector (with the model's fingerprint) applied at one coefficient to every prompt."""
    vec = ss.fit("mean_diff", lm, ss.load_pairs("sentiment")[:16], ["resid_pre.9"])
    path = vec.save(tmp_path / "v.safetensors")
    loaded = ss.SteeringVector.load(path)
    got = engine.generate(PROMPTS, steering=Steer(loaded, 6.0, "all"), max_tokens=NEW)
    for prompt, completion in zip(PROMPTS, got, strict=True):
        assert completion.token_ids == hf_tokens(lm, prompt, [(loaded.vectors, 6.0, "all")])


def test_capture_equals_hf(lm, engine):
    """Within 1e-3 absolute, plus 1e-5 relative for the massive residual entries of late layers (`final` reaches
    |x| = 3600 here, where fp32 rounding through 30 layers of other kernels differs by up to 0.03)."""
    sites = ["embed", "resid_pre.0", "resid_pre.7", "attn_out.4", "resid_mid.4", "mlp_out.4", "resid_post.4", "final"]
    got = engine.capture(PROMPTS[:2], sites)
    for prompt, acts in zip(PROMPTS[:2], got, strict=True):
        want = ss.capture(lm, lm.tokenize([prompt]), sites)
        for site in sites:
            assert acts[site].shape == want[site][0].shape
            assert torch.allclose(acts[site], want[site][0], atol=1e-3, rtol=1e-5), site


def test_text_vectors_equal_hf(lm, engine):
    from steerscope.core.extract import text_vectors

    texts = ["a short one", "a somewhat longer text about the weather", "x"]
    for read in ("last", "mean"):
        got = engine.text_vectors(texts, ["resid_pre.5"], read=read)
        want = text_vectors(lm, texts, ["resid_pre.5"], read=read)
        assert torch.allclose(got["resid_pre.5"], want["resid_pre.5"], atol=1e-3, rtol=1e-5)


def _long_prompt(lm) -> str:
    words = [
        "the",
        "river",
        "ran",
        "past",
        "the",
        "old",
        "mill",
        "and",
        "the",
        "children",
        "watched",
        "the",
        "boats",
        "go",
        "by",
    ]
    text = " ".join(words[i % len(words)] + ("." if i % 11 == 10 else "") for i in range(360))
    assert len(lm.tokenize([text])["input_ids"][0]) >= 380
    return text


@pytest.mark.parametrize("steered_first", [True, False])
def test_prefix_cache_never_mixes_steered_and_unsteered(lm, engine, steered_first):
    """A 380+ token prompt (several 128-token blocks), steered at every position and unsteered, in both orders:
    each equals HF, and a repeat of the unsteered request still reuses the cache."""
    prompt = ("Once" if steered_first else "Then") + " " + _long_prompt(lm)  # each order its own blocks
    vec = {"resid_pre.6": _direction(7, 80.0)}
    steer = Steer(vec, 1.0, "all")
    want_steered = hf_tokens(lm, prompt, [(vec, 1.0, "all")], new=8)
    want_plain = hf_tokens(lm, prompt, [], new=8)
    assert want_steered != want_plain
    order = [steer, None] if steered_first else [None, steer]
    first = engine.generate([prompt], steering=[order[0]], max_tokens=8)[0]
    second = engine.generate([prompt], steering=[order[1]], max_tokens=8)[0]
    steered, plain = (first, second) if steered_first else (second, first)
    assert steered.token_ids == want_steered
    assert plain.token_ids == want_plain
    assert second.num_cached_tokens == 0  # nothing shared between differently steered requests
    again = engine.generate([prompt], max_tokens=8)[0]  # the same unsteered request: cached blocks are reused
    assert again.token_ids == want_plain and again.num_cached_tokens >= 256


def _one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text and text
    return text


def test_refusals_are_one_line(lm, engine):
    v = _direction(5)
    with pytest.raises(VllmUnsupportedError) as exc:
        engine.generate(["x"], steering=Steer({"attn_in.3": v}))
    assert "attn_in.3" in _one_line(exc) and "resid_pre" in str(exc.value)
    with pytest.raises(VllmUnsupportedError) as exc:
        engine.generate(["x"], steering=Steer({"resid_pre.3": v}, positions=torch.ones(1, 2, dtype=torch.bool)))
    assert "mask" in _one_line(exc)
    other = ss.SteeringVector({"resid_pre.3": v}, meta={"model": "someone/else", "fingerprint": "0123456789abcdef"})
    with pytest.raises(ss.VectorMismatchError) as exc:
        engine.generate(["x"], steering=Steer(other))
    assert "someone/else" in _one_line(exc)
    assert engine.generate(["x"], steering=Steer(other, allow_other_model=True), max_tokens=2)
    wide = ss.SteeringVector({"resid_pre.3": torch.ones(64)})
    with pytest.raises(ss.VectorMismatchError) as exc:
        engine.generate(["x"], steering=Steer(wide))
    assert "d_model" in _one_line(exc)
    with pytest.raises(ss.SiteError) as exc:
        engine.capture(["x"], ["resid_pre.99"])
    _one_line(exc)
    assert engine.fingerprint() == lm.fingerprint()


def test_fit_reads_through_vllm(lm, engine):
    """`fit` takes its activations from vLLM when handed the engine: the same vector as from HF (fp32 tolerance),
    with the same metadata (the engine's fingerprint is the HF model's); a per-position method is refused."""
    pairs = ss.load_pairs("sentiment")[:8]
    got = ss.fit("mean_diff", engine, pairs, ["resid_pre.9"])
    want = ss.fit("mean_diff", lm, pairs, ["resid_pre.9"])
    assert torch.allclose(got.vectors["resid_pre.9"], want.vectors["resid_pre.9"], atol=1e-4, rtol=1e-5)
    assert got.meta["fingerprint"] == want.meta["fingerprint"] and got.meta["model"] == want.meta["model"]
    with pytest.raises(ss.MethodError) as exc:
        ss.fit("actadd", engine, pairs[:1], ["resid_pre.2"])
    assert "engine='hf'" in _one_line(exc)


def test_calls_from_threads_get_their_own_results(engine):
    """A server calls the engine from worker threads: concurrent calls wait for each other (one lock) and each
    gets what the same call gets alone."""
    import threading

    steers = [None, Steer({"resid_pre.4": _direction(21, 40.0)}, 1.0), Steer({"mlp_out.9": _direction(22, 30.0)}, -1.0)]
    alone = [engine.generate(PROMPTS, steering=s, max_tokens=6) for s in steers]
    got: dict[int, list] = {}
    threads = [
        threading.Thread(
            target=lambda i=i: got.__setitem__(i, engine.generate(PROMPTS, steering=steers[i], max_tokens=6))
        )
        for i in range(len(steers))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(len(steers)):
        assert [c.token_ids for c in got[i]] == [c.token_ids for c in alone[i]]
    assert alone[0][0].token_ids != alone[1][0].token_ids
