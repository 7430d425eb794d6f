# %% [markdown]
# # Steering as a request parameter: the OpenAI-compatible API
#
# `steerscope serve` answers OpenAI's API under `/v1`, with the steering vectors of a folder named in the request
# body. Here the server runs in a background thread of this notebook (`Background`), which is what
# `steerscope serve default --vectors DIR` does in a terminal, and the official `openai` client talks to it.

# %%
import os
import tempfile
from pathlib import Path

import openai
import torch

import steerscope as ss
from steerscope.core.generate import chat_prompt, generate_text
from steerscope.serve import Background, Playground, create_app

torch.set_num_threads(1)
QUICK = os.environ.get("STEERSCOPE_QUICK") == "1"
TOKENS = 16 if QUICK else 40

lm = ss.load_model("default")
vectors = Path(tempfile.mkdtemp())
ss.fit("mean_diff", lm, ss.load_pairs("sentiment")[:32], ["resid_pre.10"]).save(vectors / "sent.safetensors")

server = Background(create_app(Playground(lm, "default", vectors)))
url = server.__enter__()  # in a script: `with Background(app) as url:`
client = openai.OpenAI(base_url=url + "v1", api_key="none")
print(url, [m.id for m in client.models.list().data])

# %% [markdown]
# A chat completion, unsteered and steered. `extra_body` is how the official client sends a field OpenAI does
# not define; the response says which vectors were applied, with each file's sha256.

# %%
messages = [{"role": "user", "content": "Describe your morning in one sentence."}]
for coefficient in (0, 4):
    out = client.chat.completions.create(
        model="default", messages=messages, max_tokens=TOKENS, temperature=0,
        extra_body={"steering": [{"vector": "sent.safetensors", "coefficient": coefficient}]},
    )
    print(f"{coefficient:+d}: {out.choices[0].message.content!r}")
print(out.model_extra["steerscope"]["steering"][0]["sha256"][:16], out.usage)

# %% [markdown]
# The same request through the library gives the same text, token for token: the server adds nothing but HTTP.

# %%
with ss.SteeringVector.load(vectors / "sent.safetensors").apply(lm, 4):
    direct = generate_text(lm, [chat_prompt(lm, messages)], max_new_tokens=TOKENS)[0]
print("identical:", direct == out.choices[0].message.content)

# %% [markdown]
# Streaming, and a refusal in OpenAI's shape (a misspelt field is refused, never ignored).

# %%
stream = client.completions.create(
    model="default", prompt="The meeting this morning was", max_tokens=TOKENS, temperature=0, stream=True,
    extra_body={"steering": [{"vector": "sent.safetensors", "coefficient": 4}]},
)
print("".join(chunk.choices[0].text for chunk in stream if chunk.choices))
try:
    client.completions.create(model="default", prompt="Hi", extra_body={"steerin": []})
except openai.BadRequestError as error:
    print(error.status_code, error.body["message"])
server.__exit__(None, None, None)

# %% [markdown]
# With Inspect AI, the same model and vector run any task:
#
# ```bash
# inspect eval examples/inspect/sentiment_task.py --model steerscope/default -M vector=sent.safetensors -M coefficient=4
# ```
