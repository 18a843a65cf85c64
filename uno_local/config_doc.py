"""Render docs/config.md from the config dataclasses: every key with its default and what it allows.

`python -m uno_local.config_doc > docs/config.md`; a test fails when the file is out of date.
"""

from __future__ import annotations

import json

from uno_local.config import iter_keys

HEADER = """# Settings (`uno.toml`)

`uno.toml` lives in the user data dir (`uno status` prints where; `UNO_HOME` overrides it). Every key
is optional; a missing file means all defaults. Every key is checked when the file is loaded, against
its type and the values it allows (the "allowed" column); an unknown key or a bad value stops the app
with one sentence naming the key and what it allows. Command-line flags (`--model`, `--threads`,
`--ctx`, `--backend`, ...) win over the file; `--model`, `--threads`, `--ctx` and `uno ask`'s
`--temperature`, `--max-tokens` and `--seed` are checked like the keys they override.

```toml
[model]
path = "/models/my-model.gguf"

[generation]
temperature = 0.7
```

This page is generated from `uno_local/config.py` by `python -m uno_local.config_doc`.
"""


def render() -> str:
    lines = [HEADER]
    section = None
    for key, default, allowed, help_text in iter_keys():
        name, field = key.split(".", 1)
        if name != section:
            section = name
            lines += ["", f"## [{name}]", "", "| key | default | allowed | meaning |", "|---|---|---|---|"]
        lines.append(f"| `{field}` | `{json.dumps(default)}` | {allowed} | {help_text} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render(), end="")
