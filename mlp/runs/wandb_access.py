"""Where W&B is and whether this process may use it — decided quickly and without a prompt, the way
wandb itself decides it.

* `base_url()` — the server wandb talks to: `WANDB_BASE_URL`, else what `wandb login --host URL`
  saved in wandb's settings (asked of wandb, which also reads a workspace's `wandb/settings`), else
  W&B's cloud.
* `credentials_exist(url)` — wandb can log in without asking: `WANDB_API_KEY`, or a netrc entry for
  the server (`wandb login` writes the host with its port, `machine host:port`, as wandb reads it).
* `unreachable(url, timeout)` — None when the server answers an HTTP request within `timeout`
  seconds, else why not. The request goes through the proxy wandb would use: wandb's own
  `http_proxy` / `https_proxy` settings (`WANDB_HTTP_PROXY`, `WANDB_HTTPS_PROXY`), else the standard
  `HTTP_PROXY` / `HTTPS_PROXY` / `NO_PROXY` variables — so a machine that reaches W&B only through a
  proxy is online, and one whose proxy cannot reach it is not.
* `check_wandb_environment()` — the WANDB_* variables a run hands to wandb hold values wandb
  accepts, checked before anything is written (wandb itself would refuse them only after the
  run's row and W&B folder exist).
"""
from __future__ import annotations

import netrc
import os
import re
import threading
from urllib.parse import urlsplit

from mlp import config as C, paths
from mlp.errors import UsageError

__all__ = ["DEFAULT_BASE_URL", "DEFAULT_TIMEOUT_S", "base_url", "credentials_exist", "unreachable", "timeout_seconds",
           "check_wandb_environment", "WANDB_MODES"]

DEFAULT_BASE_URL = "https://api.wandb.ai"
DEFAULT_HOSTS = ("api.wandb.ai", "api.forge.coreweave.com")   # W&B's cloud, under its older and current names
DEFAULT_TIMEOUT_S = 5.0
PROXY_FAILURES = (502, 503, 504)     # what a proxy answers when it cannot reach the server
MAX_TIMEOUT_S = 600.0
WANDB_MODES = ("online", "offline", "disabled", "dryrun", "run", "shared")   # wandb.Settings.mode, exactly
# the wandb service token of a parent process: "VERSION-PID-unix-PATH" or "VERSION-PID-tcp-localhost-PORT"
_SERVICE_TOKEN = re.compile(r"\d+-\d+-(unix-.+|tcp-localhost-\d+)")


def timeout_seconds() -> float:
    """MLP_WANDB_TIMEOUT (seconds, in (0, 600]), default 5."""
    text = os.environ.get("MLP_WANDB_TIMEOUT")
    if not text:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value <= MAX_TIMEOUT_S:
        raise UsageError(f"MLP_WANDB_TIMEOUT={text!r:.40} must be a number of seconds in (0, {MAX_TIMEOUT_S:g}]; "
                         f"unset it for {DEFAULT_TIMEOUT_S:g}")
    return value


def check_wandb_environment() -> None:
    """The WANDB_* variables wandb will read hold values it accepts: WANDB_MODE exactly one of
    its modes, WANDB_PROJECT/WANDB_ENTITY names as -wp/-we take them, WANDB_SERVICE a service
    token, WANDB_DIR a folder that can be written (or created)."""
    env = os.environ
    mode = env.get("WANDB_MODE")
    if mode and mode not in WANDB_MODES:
        raise UsageError(f"WANDB_MODE={mode!r:.40} is not a W&B mode; use one of {', '.join(WANDB_MODES)} "
                         f"(lower case, as wandb reads it) or unset it")
    for variable, kind in (("WANDB_PROJECT", "project"), ("WANDB_ENTITY", "entity")):
        if env.get(variable):
            try:
                C.check_wandb_name(kind, env[variable])
            except UsageError as e:
                raise UsageError(f"{variable}: {e}; fix or unset it") from None
    token = env.get("WANDB_SERVICE")
    if token and not _SERVICE_TOKEN.fullmatch(token):
        raise UsageError(f"WANDB_SERVICE={token!r:.60} is not a wandb service token (a wandb process sets it for its "
                         f"children); unset it")
    if env.get("WANDB_DIR"):
        folder = paths.expand(env["WANDB_DIR"], "WANDB_DIR")
        if folder.exists() and (not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK)):
            raise UsageError(f"WANDB_DIR={env['WANDB_DIR']!r:.80} is not a writable folder; fix or unset it")
    timeout_seconds()
    _check_with_wandb({k: v for k, v in env.items() if k.startswith("WANDB_")})


def _check_with_wandb(variables: dict) -> None:
    """The rest of the WANDB_* variables as wandb's own Settings read them (WANDB_INIT_TIMEOUT a
    number, WANDB_CONSOLE one of its modes, …): a value it refuses is one line naming the variable,
    now, rather than a multi-line pydantic error after the run's row exists. A wandb without
    Settings.update_from_env_vars is not asked."""
    try:
        from wandb.sdk.wandb_settings import Settings
    except Exception:
        return
    if not hasattr(Settings, "update_from_env_vars"):
        return
    try:
        Settings().update_from_env_vars(dict(variables))
        return
    except Exception as e:                   # pydantic's ValidationError (a ValueError), wandb's UsageError
        together = _first_error(e)
    for name, value in sorted(variables.items()):
        try:
            Settings().update_from_env_vars({name: value})
        except Exception as e:
            shown = "(hidden)" if re.search(r"KEY|TOKEN|SECRET|PASSWORD", name) else f"{value!r:.60}"
            raise UsageError(f"{name}={shown} is not a value wandb accepts ({_first_error(e)}); fix or "
                             f"unset it") from None
    raise UsageError(f"the WANDB_* variables hold values wandb does not accept together ({together}); fix or "
                     f"unset them")


def _first_error(e: Exception) -> str:
    errors = getattr(e, "errors", None)
    try:
        first = errors()[0] if callable(errors) else None
    except Exception:
        first = None
    text = first["msg"] if isinstance(first, dict) and "msg" in first else (str(e).splitlines() or [""])[0]
    return " ".join(str(text).split())[:160]


def _settings():
    """wandb's settings as wandb itself loads them (environment, workspace and global settings
    files), or None from a wandb that cannot say."""
    try:
        from wandb.sdk.wandb_setup import singleton
        return singleton().settings
    except Exception:
        return None


def base_url() -> str:
    if os.environ.get("WANDB_BASE_URL"):
        return os.environ["WANDB_BASE_URL"].rstrip("/")
    settings = _settings()
    url = getattr(settings, "base_url", None) if settings is not None else None
    return str(url or DEFAULT_BASE_URL).rstrip("/")


def credentials_exist(url: str | None = None) -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    url = url or base_url()
    try:
        parts = urlsplit(url)
        parts.hostname
    except ValueError as e:
        raise UsageError(f"the W&B server {url!r:.80} is not a URL ({e}); fix WANDB_BASE_URL or "
                         f"`wandb login --host`") from None
    names = [parts.netloc, parts.hostname]
    if parts.hostname in DEFAULT_HOSTS:
        names += list(DEFAULT_HOSTS)
    path = os.environ.get("NETRC") or os.path.expanduser("~/.netrc")
    try:
        entries = netrc.netrc(path)
    except (OSError, netrc.NetrcParseError):
        return False
    return any(name and entries.authenticators(name) is not None for name in names)


def _proxies(url: str) -> dict:
    """The proxy for `url` as wandb picks it: its own settings, else the environment (NO_PROXY
    honoured)."""
    settings = _settings()
    own = {scheme: getattr(settings, f"{scheme}_proxy", None) for scheme in ("http", "https")} if settings else {}
    own = {k: v for k, v in own.items() if v}
    if own:
        return own
    from requests.utils import get_environ_proxies
    return get_environ_proxies(url)


def unreachable(url: str, timeout: float) -> str | None:
    """None if the server answers within `timeout` seconds (any HTTP answer but a proxy's
    failure), else why not, in a few words. Runs in a thread: on a machine without network, name
    resolution alone can hang far longer than the timeout."""
    outcome: list = []

    def attempt():
        import requests
        try:
            proxies = _proxies(url)
            with requests.get(url + "/", timeout=timeout, proxies=proxies, allow_redirects=False, stream=True) as r:
                if proxies and r.status_code in PROXY_FAILURES:
                    outcome.append(f"its proxy answered {r.status_code}")
                else:
                    outcome.append(None)
        except requests.exceptions.ProxyError as e:
            outcome.append(f"the proxy failed: {_reason(e)}")
        except requests.exceptions.RequestException as e:
            outcome.append(_reason(e))
        except Exception as e:  # a malformed URL or proxy setting
            outcome.append(f"{type(e).__name__}: {str(e)[:120]}")

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(timeout + 1.0)
    if not outcome:
        return f"no answer within {timeout:g} s"
    return outcome[0]


def _reason(e: BaseException) -> str:
    """The innermost cause of a requests error, in a few words (not its whole chain)."""
    while e.__context__ is not None and e.__context__ is not e:
        e = e.__context__
    text = " ".join(str(e).split())
    for marker in ("Name or service not known", "Temporary failure in name resolution", "Connection refused",
                   "timed out", "No route to host", "Network is unreachable"):
        if marker in text:
            return marker[0].lower() + marker[1:]
    return (text or type(e).__name__)[:160]
