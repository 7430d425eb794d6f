"""An Inspect AI task for steered models: does the completion of a neutral or negative opening read as positive?

    steerscope extract default --pairs sentiment --n-pairs 64 --method mean_diff --site resid_pre.10 --out sent.safetensors
    inspect eval examples/inspect/sentiment_task.py --model steerscope/default
    inspect eval examples/inspect/sentiment_task.py --model steerscope/default -M vector=sent.safetensors -M coefficient=4

The openings are steerscope's held-out sentiment prompts (none shares a subject with the contrast pairs); the score
is 1 when VADER's compound sentiment of the completion is at least 0.05 (VADER's own cut-off for positive).
"""

import json
from importlib import resources

from inspect_ai import Task, task
from inspect_ai.dataset import Sample
from inspect_ai.model import GenerateConfig
from inspect_ai.scorer import Score, Target, accuracy, scorer, stderr
from inspect_ai.solver import TaskState, generate

from steerscope.evaluate.scorers import sentiment_compound


@scorer(metrics=[accuracy(), stderr()])
def positive():
    async def score(state: TaskState, target: Target) -> Score:
        (compound,) = sentiment_compound([state.output.completion])
        return Score(value=1.0 if compound >= 0.05 else 0.0, answer=state.output.completion, metadata={"vader": compound})

    return score


@task
def sentiment(max_tokens: int = 24):
    data = json.loads((resources.files("steerscope") / "data" / "sentiment_prompts.json").read_text())
    openings = data["neutral"] + data["negative"]
    return Task(
        dataset=[Sample(input=f"Continue this sentence: {o}", id=i) for i, o in enumerate(openings)],
        solver=generate(),
        scorer=positive(),
        config=GenerateConfig(max_tokens=max_tokens, temperature=0),
    )
