"""What never leaves the server: Secret data, values taken from Secrets, and credentials put in plain sight.

Pure functions over the API's JSON (camelCase dicts). Every object a tool returns passes `clean_object`;
every summary, event and log passes `scrub` / `redact_text`. Three kinds of rule, applied together:

- by name: a value whose name (env variable, header, command-line flag, `name=value`, annotation key)
  suggests a credential (`DB_PASS`, `apiKey`, `--token`, `Authorization`) is replaced whole;
- by value, whatever the name: credentials inside URLs (`scheme://user:<redacted>@host`), `Bearer ...`,
  well-known token formats (JWT, OpenAI, GitHub, Slack, AWS...) and PEM private keys;
- by place: container `command`/`args` (also inside `sh -c` scripts) and annotations, where credentials
  hide most often; `last-applied-configuration` (a copy of the whole manifest) is always dropped.

Redaction errs on the side of hiding: a false positive costs the model one value, a miss leaks a secret.
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections import Counter
from collections.abc import Callable
from functools import lru_cache
from itertools import pairwise
from typing import Any

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
REDACTED = "<redacted: the variable name suggests a credential>"
REDACTED_BY_NAME = "<redacted: the name suggests a credential>"
REDACTED_PASSWORD = "<redacted>"
REDACTED_MANIFEST = "<redacted: an embedded manifest that holds a Secret or a credential>"
# Every placeholder starts so: text already redacted is not redacted again.
MARKER = "<redacted"

# --- names -------------------------------------------------------------------------------------------

# Whole words (after splitting on separators and camelCase) that name a credential.
SECRET_WORDS = frozenset(
    {
        "pass", "passwd", "password", "passwords", "passphrase", "pwd", "pw",
        "secret", "secrets", "token", "auth", "authorization", "bearer",
        "credential", "credentials", "creds", "cred", "private", "session", "sessionid",
        "cookie", "cookies", "dsn", "apikey", "key", "keys", "salt", "otp", "pat",
        "connectionstring", "connstr", "requirepass", "masterauth",
    }
)  # fmt: skip
# Parts of a longer word that name a credential whatever surrounds them (`DBPASSWORD`, `hfToken`).
SECRET_STEMS = ("password", "passwd", "passphrase", "secret", "credential", "apikey", "privatekey")
SECRET_SUFFIXES = ("token", "pwd", "accesskey", "secretkey", "signingkey", "masterkey", "authkey")
# A last word that makes the whole name describe the credential, not hold it: `DB_PASSWORD_FILE` is a path,
# `AUTH_ENABLED` a switch, `MAX_TOKENS`-like counts and limits are numbers. ("id" is not here: a session id
# is a credential.)
DESCRIBING_WORDS = frozenset(
    {
        "file", "files", "path", "dir", "directory", "mount", "name", "names", "ref", "enabled", "enable",
        "disabled", "required", "mode", "type", "method", "timeout", "ttl", "expiry", "expires", "expiration",
        "lifetime", "length", "size", "bits", "limit", "count", "interval", "max", "min", "domain", "header",
        "prefix", "suffix", "version", "algorithm", "alg", "endpoint", "issuer", "audience", "scope", "scopes",
        "format", "policy", "provider", "field", "location", "host", "hostname", "port", "user", "username",
        "url", "uri",
    }
)  # fmt: skip
# "key" alone is ambiguous: a public key, a key's id or a cache key's prefix are not credentials.
NOT_SECRET_KEY_WORDS = frozenset({"id", "public", "pub", "cache", "partition", "sort", "primary", "foreign"})
# The shell's working directory, not a password.
NOT_SECRET_NAMES = frozenset({"PWD", "OLDPWD"})


def name_words(name: str) -> list[str]:
    """`dbPassword` -> [db, password]; `X-Api-Key` -> [x, api, key]; `OPENAI_KEY` -> [openai, key]."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    spaced = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1 \2", spaced)
    return [word.lower() for word in re.split(r"[^A-Za-z0-9]+", spaced) if word]


def _is_secret_word(word: str) -> bool:
    return (
        word in SECRET_WORDS or any(stem in word for stem in SECRET_STEMS) or word.endswith(SECRET_SUFFIXES)
    )


@lru_cache(maxsize=4096)  # logs repeat the same few names thousands of times
def is_secret_name(name: str) -> bool:
    """Whether a variable, flag, header or key with this name holds a credential.

    Words, not substrings: `KEYCLOAK_URL`, `MONKEY`, `TOKENIZER_PATH` and `BYPASS_CACHE` are not secret;
    `DB_PASS`, `MYSQL_PWD`, `OPENAI_KEY`, `apiKey`, `AUTH`, `BEARER`, `SESSION_SECRET` are.
    """
    if name.strip().upper() in NOT_SECRET_NAMES:
        return False
    words = name_words(name)
    secret = [word for word in words if _is_secret_word(word)]
    pairs = set(pairwise(words))
    if pairs & {("connection", "string"), ("conn", "str"), ("connection", "str")}:
        secret.append("connectionstring")
    if not secret or words[-1] in DESCRIBING_WORDS:
        return False
    if all(word in ("key", "keys") for word in secret):
        return not any(word in NOT_SECRET_KEY_WORDS for word in words)
    return True


# --- values ------------------------------------------------------------------------------------------

# A value that only points at another variable (`$(REDIS_PASSWORD)` substituted by Kubernetes, `${TOKEN}`
# by a shell), a switch or nothing: showing it discloses no credential and keeps the spec readable.
REFERENCE = re.compile(r"\$\([A-Za-z_][A-Za-z0-9_]*\)|\$\{[A-Za-z_][A-Za-z0-9_]*\}|\$[A-Za-z_][A-Za-z0-9_]*")
HARMLESS_LITERALS = frozenset({"", "true", "false", "yes", "no", "on", "off", "null", "none"})


def is_harmless(value: str) -> bool:
    stripped = value.strip().strip("'\"")
    return stripped.lower() in HARMLESS_LITERALS or REFERENCE.fullmatch(stripped) is not None


def _character_classes(value: str) -> int:
    return sum(
        (
            any(c.islower() for c in value),
            any(c.isupper() for c in value),
            any(c.isdigit() for c in value),
        )
    )


def _entropy(value: str) -> float:
    """Shannon entropy in bits per character."""
    counts = Counter(value)
    return -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values())


def looks_like_credential(value: str) -> bool:
    """A random-looking string (mixed letters and digits, varied), not a word of prose or a path."""
    value = value.strip("'\"")
    return (
        len(value) >= 8
        and " " not in value
        and _character_classes(value) >= 2
        and _entropy(value) >= 2.5
        and REFERENCE.fullmatch(value) is None
    )


def _mixed_case_and_digits(value: str) -> bool:
    # Real keys are random mixed-case; Kubernetes object names (RFC 1123) are lowercase.
    return _character_classes(value) == 3


PEM_PRIVATE_KEY = re.compile(
    r"-----BEGIN ((?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?)-----.*?(?:-----END \1-----|\Z)", re.DOTALL
)
# The end of a key whose beginning was cut off (a log read from its tail).
PEM_PRIVATE_KEY_TAIL = re.compile(
    r"^(?:[A-Za-z0-9+/=]{16,}\r?\n)+-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----", re.MULTILINE
)
# scheme://user:password@host: the password runs to the last @ before the path (passwords with @ unencoded).
URL_CREDENTIALS = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]*):(?P<password>[^\s/]*)@")
AUTH_SCHEME = re.compile(r"(?P<scheme>\b(?:Bearer|Basic))(?P<space>\s+)(?P<token>[A-Za-z0-9._~+/=-]+)", re.I)
# (what it is, pattern, an extra check on the match)
TOKEN_FORMATS: tuple[tuple[str, re.Pattern[str], Callable[[str], bool] | None], ...] = (
    ("JWT", re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"), None),
    ("API key", re.compile(r"(?<![\w-])sk-[A-Za-z0-9_-]{20,}"), _mixed_case_and_digits),
    ("Stripe key", re.compile(r"\b[rs]k_(?:live|test)_[A-Za-z0-9]{16,}"), None),
    ("GitHub token", re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{20,})"), None),
    ("GitLab token", re.compile(r"\bglpat-[A-Za-z0-9_-]{20,}"), None),
    ("Slack token", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"), None),
    ("AWS access key", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), None),
    ("Google API key", re.compile(r"\bAIza[0-9A-Za-z_-]{35}"), None),
    ("Hugging Face token", re.compile(r"\bhf_[A-Za-z0-9]{30,}"), None),
    ("npm token", re.compile(r"\bnpm_[A-Za-z0-9]{36}"), None),
)
# `name=value`, `name: value`, `"name": "value"`: the name and separator; the value is read after it.
NAMED_VALUE = re.compile(
    r"(?<![A-Za-z0-9_.])(?P<name>[A-Za-z_][A-Za-z0-9_.-]*)(?P<sep>[\"']?[ \t]*[:=][ \t]*)"
)
QUOTED_OR_BARE = re.compile(r"\"(?:[^\"\\]|\\.)*\"|'[^']*'|[^\s,;&|\"'<>(){}\[\]]+")


def _redact_named_values(text: str) -> str:
    """Values after a credential's name: `password=...` always, `"token": "..."` (JSON) always, and
    `secret: ...` (YAML, prose) when the value looks like a credential, so log prose stays readable."""
    out: list[str] = []
    position = 0
    while (found := NAMED_VALUE.search(text, position)) is not None:
        value = QUOTED_OR_BARE.match(text, found.end())
        if value is None or text.startswith(MARKER, found.end()) or not is_secret_name(found["name"]):
            out.append(text[position : found.end()])
            position = found.end()
            continue
        raw = value.group()
        structured = "=" in found["sep"] or (found["sep"][:1] in "\"'" and raw[:1] in "\"'")
        if is_harmless(raw) or not (structured or looks_like_credential(raw)):
            out.append(text[position : value.end()])
        else:
            quote = raw[0] if raw[:1] in "\"'" and raw[-1:] == raw[0] and len(raw) > 1 else ""
            out.append(text[position : found.end()] + quote + REDACTED_BY_NAME + quote)
        position = value.end()
    out.append(text[position:])
    return "".join(out)


def _redact_url_password(found: re.Match[str]) -> str:
    if is_harmless(found["password"]) or found["password"].startswith(MARKER):
        return found.group()
    return f"{found['head']}:{REDACTED_PASSWORD}@"


def _redact_auth_scheme(found: re.Match[str]) -> str:
    token = found["token"]
    # `Basic authentication` is prose; a credential is long and mixes characters.
    if len(token) < 8 or (_character_classes(token) < 2 and not re.search(r"[._~+/=-]", token)):
        return found.group()
    return f"{found['scheme']}{found['space']}<redacted: {found['scheme'].lower()} credential>"


def redact_text(text: str) -> str:
    """Credentials found in free text by their value's shape, then by the name before them."""
    if not text:
        return text
    text = PEM_PRIVATE_KEY.sub("<redacted: private key>", text)
    text = PEM_PRIVATE_KEY_TAIL.sub("<redacted: private key>", text)
    text = URL_CREDENTIALS.sub(_redact_url_password, text)
    text = AUTH_SCHEME.sub(_redact_auth_scheme, text)
    for what, pattern, check in TOKEN_FORMATS:
        text = pattern.sub(_token_replacement(what, check), text)
    return _redact_named_values(text)


def _token_replacement(what: str, check: Callable[[str], bool] | None) -> Callable[[re.Match[str]], str]:
    def replace(found: re.Match[str]) -> str:
        return f"<redacted: {what}>" if check is None or check(found.group()) else found.group()

    return replace


def scrub(value: Any) -> Any:
    """A copy with `redact_text` applied to every string in it (keys included)."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {scrub(key): scrub(item) for key, item in value.items()}
    if isinstance(value, list):
        return [scrub(item) for item in value]
    return value


# --- command lines -----------------------------------------------------------------------------------

# Programs whose short option takes a password (elsewhere `-p` is a port: psql, redis-cli, ssh).
PASSWORD_SHORT_OPTIONS = {
    **dict.fromkeys(
        ("mysql", "mysqldump", "mysqladmin", "mysqlimport", "mysqlcheck", "mysqlshow", "mysqlslap"), "-p"
    ),
    **dict.fromkeys(("mariadb", "mariadb-dump", "mariadb-admin"), "-p"),
    **dict.fromkeys(("mongo", "mongosh", "mongodump", "mongorestore", "mongoexport", "mongoimport"), "-p"),
    "sshpass": "-p",
    "redis-cli": "-a",
    "valkey-cli": "-a",
}
# user:password options of HTTP clients.
USER_PASSWORD_OPTIONS = {"curl": ("-u", "--user", "--proxy-user"), "wget": ("--user",)}
FLAG = re.compile(r"-{1,2}(?P<name>[A-Za-z][A-Za-z0-9_.-]*)")
SHELL_TOKEN = re.compile(r"(?:\"(?:[^\"\\]|\\.)*\"|'[^']*'|[^\s\"';|&])+|[;|&\n]+")
# Words in front of the program in a shell command.
PROGRAM_PREFIXES = frozenset(
    {"exec", "env", "sudo", "nohup", "time", "command", "then", "do", "else", "if", "!"}
)
ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")


def _program(token: str) -> str:
    return token.rsplit("/", 1)[-1]


class _ArgumentRedactor:
    """Walks one command line, token by token, remembering the program and whether the next token is
    the value of a credential option (`--token xyz`, `-p secret` for mysql)."""

    def __init__(self) -> None:
        self.program: str | None = None
        self.hide_next: str | None = None  # "all" or "password" (user:password)

    def token(self, token: str) -> str:
        hide, self.hide_next = self.hide_next, None
        if hide and not token.startswith("-") and not is_harmless(token):
            return REDACTED_BY_NAME if hide == "all" else _redact_user_password(token)
        is_word = not token.startswith("-") and token not in PROGRAM_PREFIXES and not ASSIGNMENT.match(token)
        if self.program is None and is_word:
            self.program = _program(token)
            return redact_text(token)
        short = PASSWORD_SHORT_OPTIONS.get(self.program or "")
        if short and token == short:
            self.hide_next = "all"
            return token
        if short and token.startswith(short) and not token.startswith("--") and len(token) > len(short):
            return short + REDACTED_BY_NAME
        user_options = USER_PASSWORD_OPTIONS.get(self.program or "", ())
        if token in user_options:
            self.hide_next = "password"
            return token
        option, equals, value = token.partition("=")
        if equals and option in user_options:
            return f"{option}={_redact_user_password(value)}"
        flag = FLAG.fullmatch(token)
        # A single-dash flag must be a word (`-password`, Go style), not a cluster of letters (`-it`).
        if flag and is_secret_name(flag["name"]) and (token.startswith("--") or len(flag["name"]) > 2):
            self.hide_next = "all"
            return token
        return redact_text(token)


def _redact_user_password(value: str) -> str:
    user, colon, password = value.partition(":")
    return f"{user}:{REDACTED_PASSWORD}" if colon and not is_harmless(password) else value


def redact_shell(script: str) -> str:
    """A shell script (`sh -c '...'`) with the same rules per command (`;`, `&&`, `|` start a new one)."""
    out: list[str] = []
    position = 0
    redactor = _ArgumentRedactor()
    for found in SHELL_TOKEN.finditer(script):
        out.append(script[position : found.start()])
        token = found.group()
        if token[0] in ";|&\n":
            redactor = _ArgumentRedactor()
            out.append(token)
        else:
            quote = token[0] if token[0] in "\"'" and token[-1] == token[0] and len(token) > 1 else ""
            inner = token[1:-1] if quote else token
            redacted = redactor.token(inner)
            out.append(token if redacted == inner else quote + redacted + quote)
        position = found.end()
    out.append(script[position:])
    # Catches what tokenizing missed: `export TOKEN="a b"`, URLs and tokens across quotes.
    return redact_text("".join(out))


def redact_command(argv: list[Any]) -> list[Any]:
    """A container's command + args (one list: the program comes from the command), token by token;
    an argument with whitespace in it is a script and is read as one."""
    redactor = _ArgumentRedactor()
    out: list[Any] = []
    for token in argv:
        if not isinstance(token, str):
            out.append(token)
        elif redactor.hide_next is None and any(c.isspace() for c in token):
            out.append(redact_shell(token))
        else:
            out.append(redactor.token(token))
    return out


# --- objects -----------------------------------------------------------------------------------------


def redact_env_var(var: dict[str, Any]) -> dict[str, Any]:
    """An env entry (or a header: the same name/value shape) with a Secret source shown as
    `secretKeyRef: name/key`, a literal credential hidden, and other values scrubbed by their shape."""
    source = var.get("valueFrom") or {}
    if "secretKeyRef" in source:
        ref = source["secretKeyRef"] or {}
        return {"name": var.get("name"), "valueFrom": f"secretKeyRef: {ref.get('name')}/{ref.get('key')}"}
    value = var.get("value")
    if isinstance(value, str):
        if is_secret_name(str(var.get("name", ""))) and not is_harmless(value):
            return {**var, "value": REDACTED}
        return {**var, "value": redact_text(value)}
    return var


def _holds_secret(document: Any) -> bool:
    """Whether a parsed annotation value is (or contains) a Secret manifest."""
    if isinstance(document, dict):
        if document.get("kind") == "Secret" or "stringData" in document:
            return True
        return any(_holds_secret(item) for item in document.values())
    if isinstance(document, list):
        return any(_holds_secret(item) for item in document)
    return False


def redact_annotation(key: str, value: Any) -> Any:
    if not isinstance(value, str):
        return value
    # The part after the prefix names it: `vault.example.com/agent-token` -> agent-token.
    if is_secret_name(key.rsplit("/", 1)[-1]) and not is_harmless(value):
        return REDACTED_BY_NAME
    if value.lstrip()[:1] in ("{", "["):
        try:
            document = json.loads(value)
        except ValueError:
            document = None
        # A manifest with a credential anywhere is hidden whole: half a manifest misleads more than none.
        if document is not None and (_holds_secret(document) or _clean_tree(document) != document):
            return REDACTED_MANIFEST
    return redact_text(value)


def _clean_tree(node: Any, key: str | None = None) -> Any:
    """Every rule by place: env-like name/value pairs, command lines, annotations; every other string
    by its value."""
    if isinstance(node, dict):
        if isinstance(node.get("name"), str) and ("value" in node or "valueFrom" in node):
            node = redact_env_var(node)
        cleaned: dict[str, Any] = {}
        for name, item in node.items():
            if name == "annotations" and isinstance(item, dict):
                cleaned[name] = {
                    redact_text(k): redact_annotation(k, v) for k, v in item.items() if k != LAST_APPLIED
                }
            elif name == "managedFields":
                continue
            else:
                cleaned[name] = _clean_tree(item, name)
        if isinstance(cleaned.get("command"), list) or isinstance(cleaned.get("args"), list):
            command = node.get("command") if isinstance(node.get("command"), list) else []
            args = node.get("args") if isinstance(node.get("args"), list) else []
            redacted = redact_command([*command, *args])
            if command:
                cleaned["command"] = redacted[: len(command)]
            if args:
                cleaned["args"] = redacted[len(command) :]
        return cleaned
    if isinstance(node, list):
        return [_clean_tree(item, key) for item in node]
    if isinstance(node, str):
        return redact_text(node)
    return node


def clean_object(obj: dict[str, Any]) -> dict[str, Any]:
    """A copy without managedFields and last-applied annotations, with credentials redacted wherever
    they are: env values (from Secrets or literal), headers, command lines, annotations and any string
    that looks like one. Refuses Secret objects outright (use `secret_summary`)."""
    if obj.get("kind") == "Secret":
        raise ValueError("Secret objects are never returned; use secret_summary")
    cleaned: dict[str, Any] = _clean_tree(copy.deepcopy(obj))
    status = cleaned.get("status") or {}
    status.pop("images", None)  # nodes: every image on the node, large and rarely useful
    return cleaned


def secret_summary(secret: dict[str, Any]) -> dict[str, Any]:
    """A Secret by name and type only: no data, no key names, no annotations (they can hold a copy)."""
    metadata = secret.get("metadata") or {}
    return {
        "name": metadata.get("name"),
        "namespace": metadata.get("namespace"),
        "type": secret.get("type"),
        "created": metadata.get("creationTimestamp"),
    }
