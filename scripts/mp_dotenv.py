"""The .env reader of the Python scripts (scripts/scenarios.py).

The format is defined once, in srcs/xtask/src/dotenv.rs; scripts/dotenv-test.sh
holds this reader to the shared fixture in scripts/testdata/dotenv/, as the
Rust, bash and Ruby ones. `python3 scripts/mp_dotenv.py FILE` prints FILE
resolved (environment ignored) as KEY<TAB>VALUE lines.
"""

import re
import sys

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LINE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)", re.S)
_BLANKS = " \t"


class DotenvError(ValueError):
    pass


def _expand(value, values, where, key):
    out, rest = [], value
    while "${" in rest:
        head, rest = rest.split("${", 1)
        out.append(head)
        name, brace, tail = rest.partition("}")
        if not brace or not _KEY.fullmatch(name):
            raise DotenvError(f"{where}: {key}: '${{' must start a reference ${{NAME}}")
        if name not in values:
            raise DotenvError(f"{where}: {key}: ${{{name}}} is used before it is defined")
        out.append(values[name])
        rest = tail
    out.append(rest)
    return "".join(out)


def parse(text, environ=None, name=".env"):
    """Returns {KEY: value} in order of first appearance. A key in `environ`
    keeps the environment's value."""
    environ = environ or {}
    if text.startswith("\ufeff"):
        text = text[1:]
    values = {}
    for number, raw in enumerate(text.split("\n"), 1):
        where = f"{name}:{number}"
        line = raw[:-1] if raw.endswith("\r") else raw
        line = line.lstrip(_BLANKS)
        if not line or line.startswith("#"):
            continue
        if line.startswith("export") and line[6:7] in (" ", "\t"):
            line = line[6:].lstrip(_BLANKS)
        m = _LINE.fullmatch(line)
        if not m:
            raise DotenvError(f"{where}: not a KEY=VALUE line")
        key, value = m.group(1), m.group(2).strip(_BLANKS)
        if value[:1] in ("'", '"'):
            if len(value) < 2 or value[-1] != value[0]:
                raise DotenvError(f"{where}: {key}: the quote that opens the value is not closed")
        if value[:1] == "'":
            value = value[1:-1]
        else:
            if value[:1] == '"':
                value = value[1:-1]
            value = _expand(value, values, where, key)
        values[key] = environ[key] if key in environ else value
    return values


def load(path, environ=None):
    with open(path, encoding="utf-8", newline="") as f:
        return parse(f.read(), environ, path)


if __name__ == "__main__":
    try:
        for k, v in load(sys.argv[1]).items():
            print(f"{k}\t{v}")
    except (DotenvError, OSError) as e:
        sys.exit(f"error: {e}")
