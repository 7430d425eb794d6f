"""The Inspect AI model provider `steerscope`, registered through Inspect's `inspect_ai` entry point when
steerscope is installed (with the `inspect` extra), so any Inspect task runs on a steered model:

    inspect eval task.py --model steerscope/default -M vector=sent.safetensors -M coefficient=4
    inspect eval task.py --model steerscope/default -M base_url=http://127.0.0.1:8765/v1 -M vector=sent.safetensors

Without `base_url` the model is loaded in this process (`steerscope/` + any model spec `load_model` takes); with it,
a running `steerscope serve` generates and `vector` names a file in its --vectors folder.
"""

from inspect_ai.model import ModelAPI, modelapi


@modelapi(name="steerscope")
def steerscope() -> type[ModelAPI]:
    from .api import SteerscopeModelAPI

    return SteerscopeModelAPI
