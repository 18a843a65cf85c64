"""llama.cpp's own converters (convert_hf_to_gguf.py, convert_lora_to_gguf.py, conversion/, gguf-py/), taken
from the source archive of the installed llama-cpp-python, so that they match the llama.cpp we run.

Cache: $UNO_TEST_CACHE, else ~/.cache/uno-local-tests. The archive is looked for in `sdist/` there; when it is
missing, `pip download --no-binary :all: --no-deps llama-cpp-python==<installed>` fetches it from PyPI (a
package registry: the one network access the tests make, once per machine). Prefill the cache the same way
to run the tests offline.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from importlib.metadata import version
from pathlib import Path

NEEDED = ("convert_hf_to_gguf.py", "convert_lora_to_gguf.py", "conversion/", "gguf-py/")


def cache_dir() -> Path:
    return Path(os.environ.get("UNO_TEST_CACHE") or Path.home() / ".cache" / "uno-local-tests")


def converters_dir() -> Path:
    """The extracted `vendor/llama.cpp` folder holding the converters, fetched and unpacked on first use."""
    pinned = version("llama-cpp-python")
    root = cache_dir()
    target = root / f"llama.cpp-{pinned}"
    if (target / "convert_lora_to_gguf.py").is_file():
        return target
    archive = root / "sdist" / f"llama_cpp_python-{pinned}.tar.gz"
    if not archive.is_file():
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps", "-q"]
            + [f"llama-cpp-python=={pinned}", "-d", str(archive.parent)],
            check=True,
        )
    prefix = f"llama_cpp_python-{pinned}/vendor/llama.cpp/"
    tmp = root / f".llama.cpp-{pinned}.tmp-{os.getpid()}"
    with tarfile.open(archive) as tar:
        members = []
        for member in tar.getmembers():
            rel = member.name.removeprefix(prefix)
            if member.name.startswith(prefix) and member.isfile() and rel.startswith(NEEDED):
                member.name = rel
                members.append(member)
        tar.extractall(tmp, members=members, filter="data")
    tmp.rename(target)
    return target


def run_converter(script: str, *args: str) -> None:
    """Run one of llama.cpp's converters with this Python; its own gguf-py comes first on its path."""
    folder = converters_dir()
    env = {**os.environ, "PYTHONPATH": str(folder / "gguf-py"), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, str(folder / script), *args], env=env, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise RuntimeError(f"{script} failed:\n{result.stderr[-4000:]}")
