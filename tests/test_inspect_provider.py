"""The Inspect AI model provider: a real `inspect eval` (CLI, entry point resolved in a fresh process) and Inspect's
Python `eval`, in process and through a running `steerscope serve`, on the tiny byte model. The task's targets are
the library's own steered completions, so the score is 1 with the vector and 0 without it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from serve_helpers import byte_tokenizer, save_byte_model

from steerscope import load_model
from steerscope.core.generate import chat_prompt, generate_text
from steerscope.core.io import sha256_file
from steerscope.methods import fit
from steerscope.serve import Background, Limits, Playground, create_app
from steerscope.steering.pairs import load_pairs
from steerscope.steering.vector import SteeringVector

inspect_ai = pytest.importorskip("inspect_ai", reason="the inspect extra is not installed")
from inspect_ai.log import read_eval_log  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

PROMPTS = ["How was the film?", "Tell me about your day.", "What do you think of rain?"]
COEFFICIENT = 30.0
TOKENS = 8
TASK = '''
import json
from inspect_ai import Task, task
from inspect_ai.model import GenerateConfig
from inspect_ai.dataset import Sample
from inspect_ai.scorer import Score, Target, accuracy, scorer, stderr
from inspect_ai.solver import TaskState, generate


@scorer(metrics=[accuracy(), stderr()])
def same_text():
    async def score(state: TaskState, target: Target) -> Score:
        return Score(value=1.0 if state.output.completion == target.text else 0.0, answer=state.output.completion)
    return score


@task
def steered_text():
    items = json.load(open(__file__.replace(".py", ".json")))
    return Task(
        dataset=[Sample(input=i["prompt"], target=i["target"]) for i in items],
        solver=generate(),
        scorer=same_text(),
        config=GenerateConfig(max_tokens=TOKENS, temperature=0),
    )
'''.replace("TOKENS", str(TOKENS))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """The byte model with a chat template, a vector file, and a task whose targets are the steered texts."""
    root = tmp_path_factory.mktemp("inspect")
    folder = save_byte_model(root / "model")
    tok = byte_tokenizer()
    tok.chat_template = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}<assistant>"
    tok.save_pretrained(folder)
    lm = load_model(str(folder))
    vector = fit("mean_diff", lm, load_pairs("sentiment")[:8], ["resid_pre.1"], batch_size=8, seed=0)
    (root / "vectors").mkdir()
    path = vector.save(root / "vectors" / "sent.safetensors")
    targets, unsteered = [], []
    for prompt in PROMPTS:
        text = chat_prompt(lm, [{"role": "user", "content": prompt}])
        with SteeringVector.load(path).apply(lm, COEFFICIENT):
            targets.append(generate_text(lm, [text], max_new_tokens=TOKENS)[0])
        unsteered.append(generate_text(lm, [text], max_new_tokens=TOKENS)[0])
    assert all(a != b for a, b in zip(targets, unsteered, strict=True))  # else the score could not tell them apart
    items = [{"prompt": p, "target": t} for p, t in zip(PROMPTS, targets, strict=True)]
    (root / "task.json").write_text(json.dumps(items))
    (root / "task.py").write_text(TASK)
    return {"root": root, "folder": folder, "vector": path, "lm": lm}


def accuracy_of(log) -> float:
    return log.results.scores[0].metrics["accuracy"].value


def test_inspect_eval_cli_with_and_without_the_vector(setup):
    root, folder, vector = setup["root"], setup["folder"], setup["vector"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "INSPECT_DISPLAY": "none", "INSPECT_LOG_FORMAT": "json"}
    inspect = Path(sys.executable).parent / "inspect"
    scores = {}
    for name, args in {"steered": ["-M", f"vector={vector}", "-M", f"coefficient={COEFFICIENT}"], "bare": []}.items():
        logs = root / f"logs-{name}"
        cmd = [str(inspect), "eval", "task.py", "--model", f"steerscope/{folder}", *args]
        run = {"env": env, "cwd": root, "capture_output": True, "text": True, "timeout": 300}
        done = subprocess.run([*cmd, "--log-dir", str(logs)], **run)  # type: ignore[call-overload]
        assert done.returncode == 0, done.stderr[-2000:]
        (log_file,) = logs.glob("*.json")
        log = read_eval_log(str(log_file))
        assert log.status == "success", log.error
        scores[name] = accuracy_of(log)
        if name == "steered":
            provenance = log.samples[0].output.metadata["steerscope"]
            (entry,) = provenance["steering"]
            assert entry["sha256"] == sha256_file(vector) and entry["coefficient"] == COEFFICIENT
            assert entry["method"] == "mean_diff" and entry["sites"] == ["resid_pre.1"]
            assert provenance["model_fingerprint"] == setup["lm"].fingerprint()
            assert log.eval.model_args["vector"] == str(vector)
    assert scores == {"steered": 1.0, "bare": 0.0}


def test_inspect_through_a_running_server(setup, monkeypatch):
    from inspect_ai import eval as inspect_eval

    root, lm = setup["root"], setup["lm"]
    monkeypatch.chdir(root)  # Inspect takes a task file by a relative path
    playground = Playground(lm, str(setup["folder"]), root / "vectors", None, Limits(max_prompt_tokens=64))
    with Background(create_app(playground, api_key="k")) as url:
        (log,) = inspect_eval(
            "task.py",
            model=f"steerscope/{setup['folder']}",
            model_base_url=url + "v1",
            model_args={"vector": "sent.safetensors", "coefficient": COEFFICIENT, "api_key": "k"},
            log_dir=str(root / "logs-server"),
            display="none",
        )
    assert log.status == "success", log.error
    assert accuracy_of(log) == 1.0
    (entry,) = log.samples[0].output.metadata["steerscope"]["steering"]
    assert entry["sha256"] == sha256_file(setup["vector"])


def test_bad_model_args_fail_before_any_sample(setup):
    from steerscope.inspect_provider.api import SteerscopeModelAPI

    with pytest.raises(ValueError, match="unknown model arg"):
        SteerscopeModelAPI(str(setup["folder"]), vectr="x")
    with pytest.raises(ValueError, match="finite"):
        SteerscopeModelAPI(str(setup["folder"]), vector=str(setup["vector"]), coefficient=float("nan"))
