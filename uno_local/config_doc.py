"""Render docs/config.md from the config dataclasses, so every key is documented with its default.

`python -m uno_local.config_doc > docs/config.md`; a test fails when the file is out of date.
"""

from __future__ import annotations

import json

from uno_local.config import iter_keys

HEADER = """# Settings (`uno.toml`)

`uno.toml` lives in the user data dir (`uno status` prints where; `UNO_HOME` overrides it). Every key
is optional; a missing file means all defaults. Command-line flags (`--model`, `--threads`, `--ctx`,
`--backend`, ...) win over the file. An unknown key or a value of the wrong type stops the app with
one sentence naming it.

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
    for key, default, help_text in iter_keys():
        name, field = key.split(".", 1)
        if name != section:
            section = name
            lines += ["", f"## [{name}]", "", "| key | default | meaning |", "|---|---|---|"]
        lines.append(f"| `{field}` | `{json.dumps(default)}` | {help_text} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render(), end="")
