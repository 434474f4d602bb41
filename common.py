"""What every script needs of its surroundings: errors and the command line, devices and
precision, the tokenizer, the jobs run as processes, result tables, atomic writes and provenance.
Checkpoints are in checkpoint.py, data in corpus.py, the training loop in trainer.py."""
import argparse
import contextlib
import csv
import fcntl
import functools
import hashlib
import io
import json
import math
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from contextlib import nullcontext
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent
DTYPES = ("auto", "float32", "bfloat16")


class UserError(Exception):
    """Bad input: reported as one line on stderr, exit code 2."""


def fail(msg):
    """Bad input: one line on stderr naming what is wrong and what to do, exit code 2."""
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(2)


def main_guard(main):
    """Run main(); a UserError anywhere below becomes fail()'s one line instead of a traceback."""
    try:
        main()
    except UserError as e:
        fail(str(e))
    except KeyboardInterrupt:
        fail("interrupted; the last checkpoint written is intact")
    except BrokenPipeError:  # output piped into `head` and the reader left: stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit flush cannot raise again
        sys.exit(1)


# --- flags: every value checked against its domain before any work starts ------------------------

class Parser(argparse.ArgumentParser):
    """argparse, refusing bad input nanodepth's way: one line on stderr, exit code 2."""

    def error(self, message):
        fail(f"{message} (see --help)")


def integer(lo=None, hi=None):
    """An argparse type: an integer in [lo, hi]."""
    def parse(text):
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise argparse.ArgumentTypeError(f"must be {_range(lo, hi)}, got {v}")
        return v
    return parse


def parse_int_list(text, what):
    """[1, 2, 4] from "1,2,4"; ValueError naming `what` otherwise."""
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"{what} must be comma-separated integers like 1,2,4; got {text!r}") from None
    if not values:
        raise ValueError(f"{what} is empty")
    if min(values) < 0:
        raise ValueError(f"{what} must be non-negative; got {text!r}")
    if len(set(values)) < len(values):  # a repeated seed would table one run twice, as two seeds
        raise ValueError(f"{what} names {sorted(v for v in set(values) if values.count(v) > 1)} more than once; "
                         f"got {text!r}")
    return values


def real(lo=None, hi=None, above=None):
    """An argparse type: a finite number in [lo, hi] (and > above)."""
    def parse(text):
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(v):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
        if (lo is not None and v < lo) or (hi is not None and v > hi) or (above is not None and v <= above):
            raise argparse.ArgumentTypeError(f"must be {_range(lo, hi, above)}, got {v:g}")
        return v
    return parse


def _range(lo, hi, above=None):
    parts = ([f"> {above:g}"] if above is not None else []) + ([f">= {lo:g}"] if lo is not None else []) + \
        ([f"<= {hi:g}"] if hi is not None else [])
    return " and ".join(parts)


def folder_to_write(path, flag):
    """Refuse an output folder that is a file, or that cannot be created or written, before any
    work starts (nothing is created here)."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise UserError(f"{flag} {p} is a file; give a folder")
    probe = p
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {p} cannot be written here ({probe} is not a writable folder)")


# --- recipes: a study's settings in a file, read (never executed) -----------------------------

def parse_with_recipe(parser, argv, section):
    """Parse argv; with --config FILE (JSON), the file's `section` object sets the defaults first,
    so flags given on the command line override it. The file's path and sha256 are kept in
    args.config and args.config_sha256 (and from there in every result file); the flags the
    command line gave, in args.given_flags (a resumed run reapplies only those)."""
    parser.add_argument("--config", default="", help="recipe file (JSON, see recipes/): its "
                        f"\"{section}\" settings are the defaults; flags given here override them")
    args = parser.parse_args(argv)
    args.config_sha256 = ""
    args.given_flags = given_flags(parser, argv)
    if not args.config:
        return args
    path = Path(args.config)
    if not path.is_file():
        raise UserError(f"--config {path}: no such file; the recipes are in {ROOT / 'recipes'}")
    try:
        recipe = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"--config {path} is not valid JSON ({e})") from None
    values = recipe.get(section, {}) if isinstance(recipe, dict) else None
    if not isinstance(values, dict):
        raise UserError(f"--config {path}: \"{section}\" must be an object of flag names and values")
    actions = {a.dest: a for a in parser._actions}
    values = {k: recipe_value(actions, k, v, f"--config {path}: {section}.{k}") for k, v in values.items()}
    given = args.given_flags  # defaults are suppressed there, so the recipe does not change it
    parser.set_defaults(**values)
    args = parser.parse_args(argv)
    args.config_sha256, args.given_flags = sha256_file(path), given
    return args


def recipe_value(actions, key, value, where):
    """A recipe's value for flag `key`, checked as the command line would check it, kind included
    (a switch takes true or false; a flag that takes a value, a string or a number, never a list,
    an object or null), and converted by the flag's own type."""
    act = actions.get(key)
    if act is None or key in ("help", "config"):
        raise UserError(f"{where} is not a flag of this script")
    if act.nargs == 0:
        if not isinstance(value, bool):
            raise UserError(f"{where} must be true or false, got {json.dumps(value)}")
        return value
    kinds = (str,) if act.type is None else (str, int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise UserError(f"{where} = {json.dumps(value)}: give a {'string' if act.type is None else 'number or string'}"
                        ", as the flag takes on the command line")
    if callable(act.type):  # the flag's own domain check, as on the command line
        try:
            value = act.type(str(value))
        except (argparse.ArgumentTypeError, ValueError) as e:
            raise UserError(f"{where} = {value!r}: {e}") from None
    if act.choices is not None and value not in act.choices:
        raise UserError(f"{where} = {value!r}; choose one of {', '.join(map(str, act.choices))}")
    return value


def given_flags(parser, argv):
    """The destinations the command line set, as argparse itself resolved them (abbreviations
    and --flag=value included): parse again with every default suppressed."""
    saved = {a: a.default for a in parser._actions}, dict(parser._defaults)
    try:
        for a in parser._actions:
            a.default = argparse.SUPPRESS
        parser._defaults.clear()
        given, _ = parser.parse_known_args(argv)
    finally:
        for a, d in saved[0].items():
            a.default = d
        parser._defaults.update(saved[1])
    return sorted(vars(given))


# --- devices and precision --------------------------------------------------------------------

def pick_device(name="auto"):
    """auto (cuda, then mps, then cpu), or the device named, refused when this machine lacks it."""
    cuda = torch.cuda.is_available()
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    if name == "auto":
        return "cuda" if cuda else "mps" if mps else "cpu"
    kind, _, index = name.partition(":")
    if kind not in ("cpu", "cuda", "mps") or (index and (kind != "cuda" or not index.isdigit())):
        raise UserError(f"--device {name!r} is not a device; choose auto, cpu, cuda, cuda:N or mps")
    if kind == "cuda" and not cuda:
        raise UserError(f"--device {name}: this machine has no CUDA GPU that torch can use; use --device cpu (or auto)")
    if kind == "cuda" and index and int(index) >= torch.cuda.device_count():
        raise UserError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA GPU(s), "
                        f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    if kind == "mps" and not mps:
        raise UserError("--device mps: this machine has no Apple GPU that torch can use; use --device cpu (or auto)")
    return name


def cpu_bf16():
    """This CPU's bf16 matmul instructions: "amx", "avx512_bf16" or "" (none)."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return ""
    return "amx" if "amx_bf16" in flags else "avx512_bf16" if "avx512_bf16" in flags else ""


@functools.cache
def bf16_matmul_faster(n=1024, reps=3):
    """Whether this CPU multiplies n x n matrices at least 1.2x faster in bf16 than in fp32 (about
    half a second, once per process)."""
    seconds = {}
    for dt in (torch.float32, torch.bfloat16):
        a = torch.randn(n, n, dtype=dt)
        a @ a  # warm-up
        t = time.perf_counter()
        for _ in range(reps):
            a @ a
        seconds[dt] = time.perf_counter() - t
    return seconds[torch.float32] > 1.2 * seconds[torch.bfloat16]


def pick_dtype(name, device):
    """'auto': bf16 where the hardware multiplies bf16 faster than fp32, fp32 elsewhere: CUDA with
    bf16, and CPUs with AMX, take bf16; CPUs without bf16 instructions keep fp32 (an AVX2 EPYC ran
    bf16 fine-tuning 9x slower). CPUs with AVX512-BF16 but no AMX went both ways (a Xeon's bf16
    matmuls ran at about half its fp32 FLOP/s, an EPYC's at 2.3x, where bf16 fine-tuning ran 1.5x
    faster), so there a quick matmul decides."""
    if name == "auto":
        dev = device.split(":")[0]
        if dev == "cuda" and torch.cuda.is_bf16_supported():
            return "bfloat16"
        kind = cpu_bf16() if dev == "cpu" else ""
        return "bfloat16" if kind == "amx" or (kind and bf16_matmul_faster()) else "float32"
    if name not in DTYPES:
        raise UserError(f"unknown dtype {name!r}; choose {', '.join(DTYPES)}")
    return name


def keep_freed_memory():
    """CPU training frees and re-allocates the same large buffers every step; glibc hands big
    blocks back to the OS on free, so each step page-faults them in again (most of the step's
    system time). Keeping freed memory in the process: tiny class, depth 4, batch 8 x 256 on the
    2-core dev machine, 3,250 -> 3,877 tokens/s, system time 2.4 s -> 0.1 s per 15 steps."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-4, 0)        # M_MMAP_MAX: no block gets its own mmap
        libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD: keep up to 1 GiB of freed heap
    except (OSError, AttributeError):
        pass


def autocast(device, dtype):
    """Mixed precision context: bf16 autocast, or nothing for fp32."""
    if dtype == "float32":
        return nullcontext()
    return torch.autocast(device.split(":")[0], dtype=torch.bfloat16)


# --- tokenizer ----------------------------------------------------------------------------------

_ENCODER = None


def gpt2_encoder():
    """tiktoken's GPT-2 BPE; offline it needs TIKTOKEN_CACHE_DIR pointing at a copy of its files."""
    global _ENCODER
    if _ENCODER is None:
        import tiktoken
        try:
            _ENCODER = tiktoken.get_encoding("gpt2")
        except Exception as e:  # tiktoken raises requests' errors when it cannot fetch its files
            raise UserError(f"tiktoken could not load the GPT-2 vocabulary ({type(e).__name__}); offline, "
                            "set TIKTOKEN_CACHE_DIR to a folder holding tiktoken's GPT-2 files") from None
    return _ENCODER


@functools.cache
def gpt2_prefix(vocab_size):
    """GPT-2's BPE kept to its first vocab_size - 1 merge ranks, plus EOT as id vocab_size - 1: a
    smaller byte-level BPE (no unknown tokens, the same leading-space words) whose ids below EOT are
    GPT-2's own. Returns, for each GPT-2 id, its ids in the smaller BPE. BPE merges the lowest-ranked
    pair first, so encoding with the first N ranks stops where the full encoding passes rank N: each
    GPT-2 token's bytes, merged alone with those ranks, give exactly its part of the smaller BPE's
    encoding, and a text's GPT-2 ids map to its ids in the smaller BPE token by token (a test
    checks this against tiktoken's own encoder of those ranks)."""
    enc = gpt2_encoder()
    if not 257 <= vocab_size <= enc.n_vocab:
        raise UserError(f"vocab_size {vocab_size}: a prefix of GPT-2's BPE holds 257 (the 256 bytes and EOT) "
                        f"to {enc.n_vocab} tokens")
    ranks = {enc.decode_single_token_bytes(i): i for i in range(vocab_size - 1)}
    table = [_merge(enc.decode_single_token_bytes(i), ranks) for i in range(enc.n_vocab - 1)]
    return table + [[vocab_size - 1]]  # EOT


def _merge(piece, ranks):
    """Byte-pair encoding of one piece: merge the adjacent pair of lowest rank until none is ranked."""
    parts = [piece[i:i + 1] for i in range(len(piece))]
    while len(parts) > 1:
        i = min(range(len(parts) - 1), key=lambda j: ranks.get(parts[j] + parts[j + 1], math.inf))
        if parts[i] + parts[i + 1] not in ranks:
            break
        parts[i:i + 2] = [parts[i] + parts[i + 1]]
    return [ranks[p] for p in parts]


# --- the jobs as processes: the study runs train.py, finetune.py, evaluate.py as a user would ----

def run_script(script, argv, check=False):
    """Run ROOT/script with argv in a child process. check: the child only parses its flags
    (--check) and its one error line, if any, becomes this process's UserError. Otherwise the
    child writes to this terminal; its failure (already explained on stderr) ends this process
    with the child's exit code, and this process's SIGTERM or death stops the child too."""
    cmd = [sys.executable, str(ROOT / script), *argv]
    if check:
        r = subprocess.run(cmd + ["--check"], capture_output=True, text=True)
        if r.returncode:
            line = (r.stderr.strip().splitlines() or [f"exit code {r.returncode}"])[-1]
            raise UserError(f"{script}: {line.removeprefix('error: ')}")
        return
    child = subprocess.Popen(cmd, preexec_fn=_stop_with_parent)
    try:
        with sigterm_exits():
            code = child.wait()
    finally:
        if child.poll() is None:  # this process was stopped: the child goes with it, checkpoints intact
            child.terminate()
            child.wait()
    if code:
        raise SystemExit(code)


@contextlib.contextmanager
def sigterm_exits():
    """SIGTERM (a scheduler's or torchrun's stop) becomes an exit, so a checkpoint being written is
    cleaned up as on Ctrl-C; the checkpoints already on disk are untouched. (Main thread only:
    Python delivers signals there.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def _stop_with_parent():
    """Linux: the child gets SIGTERM when its parent dies, even by SIGKILL (prctl PR_SET_PDEATHSIG)."""
    try:
        import ctypes
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


# --- results: means with confidence intervals, and result tables read back ---------------------

# two-sided 95% Student t quantiles by degrees of freedom (normal beyond 30)
T95 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
       2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
       2.045, 2.042]


def mean_ci(values):
    """Mean and half-width of the 95% confidence interval (t-distribution over seeds)."""
    values = [v for v in values if v not in (None, "") and not math.isnan(v)]
    if not values:
        return float("nan"), float("nan")
    m = statistics.fmean(values)
    if len(values) < 2:
        return m, float("nan")
    t = T95[len(values) - 2] if len(values) - 1 <= len(T95) else 1.96
    return m, t * statistics.stdev(values) / math.sqrt(len(values))


TEXT_COLUMNS = {"model_class", "task", "control", "code_version", "recipe", "pretrain_args", "finetune_args",
                "vocab", "batching", "dtype", "run", "variant", "pretrain_dataset"}


def read_csv(path):
    """A results or curve CSV as written, numbers and booleans parsed back ([] if absent)."""
    def value(k, v):
        if k in TEXT_COLUMNS or k.endswith("sha256") or v == "":
            return v
        if v in ("True", "False"):
            return v == "True"
        for kind in (int, float):
            try:
                return kind(v)
            except ValueError:
                pass
        return v
    if not Path(path).is_file():
        return []
    return [{k: value(k, v) for k, v in r.items()} for r in csv.DictReader(open(path, newline=""))]


def write_csv(path, rows):
    """rows (dicts) as a CSV, atomically; the columns in order of first appearance."""
    text = io.StringIO(newline="")
    w = csv.DictWriter(text, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
    w.writeheader()
    w.writerows(rows)
    write_atomic(path, text.getvalue())


# --- atomic writes: a crash never leaves a half-written file under the real name ---------------

def write_atomic(path, data):
    """Write bytes or text to a temporary file beside path, then rename it over path. The
    temporary name holds the process id, so processes writing the same file never collide."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        if isinstance(data, str):
            tmp.write_text(data, encoding="utf-8")
        else:
            tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:  # Ctrl-C and exits too: no half-written file is left behind
        tmp.unlink(missing_ok=True)
        raise


def save_figure(fig, path, dpi=120):
    """A matplotlib figure written as write_atomic writes: whole or not at all."""
    buf = io.BytesIO()
    fig.savefig(buf, format=Path(path).suffix.lstrip(".") or "png", dpi=dpi)
    write_atomic(path, buf.getvalue())


def remove_stale_temporaries(folder):
    """Delete the <name>.<pid>.tmp files of write_atomic and save_checkpoint whose process is gone
    (a write cut off by SIGKILL or a power cut); returns their names."""
    gone = []
    for tmp in Path(folder).glob("*.*.tmp"):
        pid = tmp.name.rsplit(".", 2)[-2]
        if pid.isdigit() and not pid_alive(int(pid)):
            tmp.unlink(missing_ok=True)
            gone.append(tmp.name)
    return gone


@contextlib.contextmanager
def hold_folder(path, flag="--out_dir"):
    """One run per folder: an exclusive lock on <path>/.lock while the run lives. The kernel drops
    it on any exit, kill -9 included, so a dead run never leaves a lock standing. A second run
    there is refused in one line naming the holder. A folder made here and left holding only the
    lock (the run failed before writing) is removed again."""
    p = Path(path)
    made = not p.exists()
    p.mkdir(parents=True, exist_ok=True)
    f = open(p / ".lock", "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "another process"
        f.close()
        raise UserError(f"{flag} {p} is in use by a run that is still going ({holder}); wait for it to "
                        f"end or give another {flag}") from None
    f.seek(0)
    f.truncate()
    f.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
    f.flush()
    ok = False
    try:
        yield
        ok = True
    finally:
        f.close()  # closing the file releases the lock
        if made and not ok and [q.name for q in p.iterdir()] == [".lock"]:
            (p / ".lock").unlink()
            p.rmdir()


def pid_alive(pid):
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        pass
    return True


def sha256_file(path, chunk=1 << 20):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def code_version():
    """The git commit of this code, with '+dirty' when its code has uncommitted changes (results/
    is left out: a study writes its tables there as it runs, and they change no code). A copy
    shipped elsewhere (a cluster job, a GPU box) names its commit in NANODEPTH_CODE_VERSION, which
    wins over git there: such a copy may carry a .git of another commit."""
    if os.environ.get("NANODEPTH_CODE_VERSION"):
        return os.environ["NANODEPTH_CODE_VERSION"]
    fallback = "unknown"
    try:
        rev = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                ":(exclude)results"], cwd=ROOT, capture_output=True, text=True,
                               timeout=10).stdout.strip()
        return (rev + ("+dirty" if dirty else "")) if rev else fallback
    except (OSError, subprocess.SubprocessError):
        return fallback
