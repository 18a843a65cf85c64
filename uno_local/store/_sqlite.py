"""sqlite-utils, imported without pandas and numpy.

sqlite-utils imports pandas and numpy whenever they are installed (about 2 s on a busy 2-core
machine) only to map their scalar types to column types when it creates tables from Python values.
The store creates its tables with SQL and reads and writes through `execute`, so both are hidden
while sqlite-utils loads: a `None` in `sys.modules` makes `import pandas` raise ImportError. A
package that something has already imported is left as it is.
"""

import sys

HIDDEN = [name for name in ("pandas", "numpy") if name not in sys.modules]
for name in HIDDEN:
    sys.modules[name] = None  # type: ignore[assignment]
try:
    import sqlite_utils
finally:
    for name in HIDDEN:
        del sys.modules[name]

__all__ = ["sqlite_utils"]
