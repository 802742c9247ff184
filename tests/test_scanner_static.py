"""The static code scanner: the corpus of routes past it, legitimate ML code, and rule by rule."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from executors.scan.rules import RULES
from executors.scan.scanner import ScanReport, format_findings, scan_static
from ledger.domain.events import Finding

CORPUS = Path(__file__).parent / "scanner_corpus"
MALICIOUS = sorted((CORPUS / "malicious").glob("*.py"))
LEGIT = sorted((CORPUS / "legit").glob("*.py"))
EXPECT = re.compile(r"^# expect: (\S+)$", re.MULTILINE)


def rules_of(report: ScanReport, severity: str | None = None) -> set[str]:
    return {f.rule for f in report.findings if severity is None or f.severity == severity}


def test_corpus_is_big_enough() -> None:
    """The corpus holds at least 40 malicious routes and 20 legitimate solutions."""
    assert len(MALICIOUS) >= 40
    assert len(LEGIT) >= 20


@pytest.mark.parametrize("path", MALICIOUS, ids=lambda p: p.stem)
def test_malicious_snippet_is_rejected_by_its_rule(path: Path) -> None:
    """Every malicious snippet is rejected, and by the rule its header names."""
    code = path.read_text()
    expected = EXPECT.search(code)
    assert expected, f"{path.name} lacks an '# expect: <rule>' header"
    report = scan_static(code)
    assert report.verdict == "rejected"
    assert expected.group(1) in rules_of(report, "critical")


@pytest.mark.parametrize("path", LEGIT, ids=lambda p: p.stem)
def test_legit_solution_is_not_rejected(path: Path) -> None:
    """Realistic ML solutions pass the scanner with no critical finding."""
    report = scan_static(path.read_text())
    assert report.verdict in ("approved", "warned")
    assert not rules_of(report, "critical")


def test_required_routes_are_in_the_corpus() -> None:
    """The corpus covers subprocess.run, os.popen and a getattr with a concatenated name."""
    texts = "\n".join(p.read_text() for p in MALICIOUS)
    for route in ("subprocess.run(", "os.popen(", 'getattr(os, "sys" + "tem")('):
        assert route in texts


@pytest.mark.parametrize(
    ("code", "rule"),
    [
        ("import os\nos.system('ls')", "proc.os_system"),
        ("import os\nos.popen('ls')", "proc.os_popen"),
        ("import os\nos.execvp('sh', ['sh'])", "proc.os_exec"),
        ("import os\nos.spawnv(os.P_WAIT, '/bin/sh', ['sh'])", "proc.os_spawn"),
        ("import os\nos.posix_spawnp('sh', ['sh'], {})", "proc.os_spawn"),
        ("import os\nos.forkpty()", "proc.os_fork"),
        ("import subprocess", "proc.subprocess"),
        ("from subprocess import Popen", "proc.subprocess"),
        ("import pty", "proc.pty"),
        ("import asyncio\nasyncio.create_subprocess_exec('id')", "proc.asyncio_subprocess"),
        ("import multiprocessing as mp, os\nmp.Pool().map(os.system, ['id'])", "proc.multiprocessing_shell"),
        ("eval('1')", "dyn.eval"),
        ("exec('x = 1')", "dyn.exec"),
        ("compile('1', 'f', 'eval')", "dyn.compile"),
        ("__import__('os')", "dyn.dunder_import"),
        ("import importlib.util", "dyn.importlib"),
        ("import runpy", "dyn.runpy"),
        ("import ctypes", "native.ctypes"),
        ("from cffi import FFI", "native.cffi"),
        ("import socket", "net.socket"),
        ("from os import *", "indirect.star_import"),
        ("from subprocess import *", "indirect.star_import"),
        ("import os\ngetattr(os, name)", "indirect.computed_attr"),
        ("import builtins\ngetattr(builtins, name)('1')", "indirect.computed_attr"),
        ("import os\nos.__dict__[name]", "indirect.computed_attr"),
        ("import os\nvars(os).get(name)", "indirect.computed_attr"),
        ("globals()[name]", "indirect.globals"),
        ("g = globals()\ng.get(name)", "indirect.globals"),
        ("__builtins__", "indirect.builtins"),
        ("import sys\nsys.modules['os']", "indirect.sys_modules"),
        ("object.__subclasses__()", "indirect.introspection"),
        ("import os\nhelpers = [os]", "indirect.module_value"),
        ("helper().execv('/bin/sh', ['sh'])", "proc.os_exec"),
    ],
)
def test_rule_fires(code: str, rule: str) -> None:
    """Each critical rule fires on its plainest spelling and rejects the code."""
    report = scan_static(code)
    assert rule in rules_of(report, "critical")
    assert report.verdict == "rejected"


@pytest.mark.parametrize(
    ("code", "rule"),
    [
        ("import subprocess as sp\nsp.run(['id'])", "proc.subprocess"),
        ("from os import system as s\ns('id')", "proc.os_system"),
        ("import os as o\nrunner = o.system\nrunner('id')", "proc.os_system"),
        ("import os\ngetattr(os, 'system')('id')", "proc.os_system"),
        ("import os\nname = 'sys'\nname += 'tem'\ngetattr(os, name)('id')", "proc.os_system"),
        ("import os\ngetattr(os, 'SYSTEM'.lower())('id')", "proc.os_system"),
        ("import os\ngetattr(os, b'system'.decode())('id')", "proc.os_system"),
        ("import builtins\nbuiltins.exec('1')", "dyn.exec"),
        ("__builtins__['eval']('1')", "dyn.eval"),
        ("globals()['__builtins__']", "indirect.builtins"),
        ("import posix\nposix.popen('id')", "proc.os_popen"),
        ("import tempfile\ntempfile._os.system('id')", "proc.os_system"),
        ("def run():\n    return o.system('id')\nimport os as o", "proc.os_system"),
        ("class Box:\n    import subprocess as sp\nBox.sp.run(['id'])", "proc.subprocess"),
        ("import asyncio\nasync def f(loop):\n    await loop.subprocess_exec(None, 'id')", "proc.asyncio_subprocess"),
        ("import os\nobject.__getattribute__(os, 'system')('id')", "proc.os_system"),
        ("import glob\n[glob][0].os.system('id')", "proc.os_system"),
    ],
)
def test_indirect_route_is_resolved(code: str, rule: str) -> None:
    """Aliases, rebinding, by-name lookups and re-exports resolve to the callable they reach."""
    assert rule in rules_of(scan_static(code), "critical")


@pytest.mark.parametrize(
    "code",
    [
        "def eval(model):\n    return model\neval(1)",
        "def train(model, compile=False):\n    return torch.compile(model) if compile else model",
        "import re\npattern = re.compile('a+')",
        "import torch\nmodel = torch.compile(model)\nmodel.eval()",
        "import torch\nfn = getattr(torch, 'compile', None)",
        "import torch.nn as nn\nact = getattr(nn, cfg['activation'])()",
        "params = {k: getattr(args, k) for k in vars(args)}",
        "import os\npath = os.path.join('data', 'train.csv')\nos.makedirs('out', exist_ok=True)",
        "from urllib.parse import urlparse\nprint(urlparse('http://x'))",
        "import time\ntime.sleep(60)",
        "with open('submission.csv', 'w') as f:\n    f.write('id,target')",
        "open('/etc/hostname').read()",
        "import multiprocessing as mp\nwith mp.Pool(4) as pool:\n    pool.map(len, ['a'])",
        "df.to_csv('submission.csv', index=False)",
        "x = 1\nif 'torch' in dir():\n    pass",
        "import os\nn = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()",
        "import os as o\nalias = o\nprint(alias.getcwd())",
        "import sys\nprint('done', file=sys.stderr)\nsys.exit(0)",
    ],
)
def test_legitimate_spelling_is_approved(code: str) -> None:
    """Look-alikes of forbidden names (own eval, torch.compile, re.compile, …) are not findings."""
    report = scan_static(code)
    assert report.findings == []
    assert report.verdict == "approved"


@pytest.mark.parametrize(
    ("code", "rule"),
    [
        ("import pickle\npickle.loads(b\"cos\\nsystem\\n(S'id'\\ntR.\")", "dyn.pickle"),
        ("import pickle, zlib\npickle.loads(zlib.decompress(b'x\\x9c'))", "dyn.pickle"),
        ("import pickle, zlib\nblob = zlib.decompress(b'x\\x9c')\npickle.loads(blob)", "dyn.pickle"),
        ("import io, pickle\npickle.Unpickler(io.BytesIO(b'...')).load()", "dyn.pickle"),
        ("import pickle\npickle.loads(bytes.fromhex('80'))", "dyn.pickle"),
        ("import pickle, base64\npickle.loads(base64.b64decode(('gA' + 'SV').encode()))", "dyn.pickle"),
        ("data = '63706f7369780a73797374656d0a2853276964270a74522e'", "dyn.pickle"),
        ("import marshal\nmarshal.loads(data)", "dyn.pickle"),
        ("from marshal import load", "dyn.pickle"),
        ("open('m.py', 'w').write(src)\nimport m", "dyn.written_code"),
        ("def f():\n    import m\nopen('m.py', 'w').write(src)", "dyn.written_code"),
        ("from pathlib import Path\nPath('x').with_suffix('.py').write_text(s)\nimport x", "dyn.written_code"),
        ("import os\nos.rename('blob.txt', 'helper.py')\nimport helper", "dyn.written_code"),
        ("open('libfast.so', 'wb').write(blob)", "dyn.written_code"),
        ("open('sitecustomize.py', 'w').write(src)", "dyn.written_code"),
        ("import sys\nopen(sys.prefix + '/lib/x.pth', 'w').write(src)", "dyn.written_code"),
        ("import numpy as np\nopen(np.__file__ + '/../../x.pth', 'w').write(src)", "dyn.written_code"),
        ("open('/home/u/.local/lib/python3.11/site-packages/x.pth', 'w')", "dyn.written_code"),
        ("import site", "dyn.import_system"),
        ("import imp", "dyn.import_system"),
        ("from zipimport import zipimporter", "dyn.import_system"),
        ("import pkgutil\npkgutil.resolve_name('os:system')", "dyn.import_system"),
        ("import sys\nsys.meta_path.insert(0, finder)", "dyn.import_system"),
        ("import _xxsubinterpreters", "dyn.subinterpreter"),
        ("import _interpreters", "dyn.subinterpreter"),
        ("import uuid\nuuid._get_command_stdout('id')", "proc.private_helper"),
        ("import platform\nplatform._syscmd_file('x', '')", "proc.private_helper"),
        ("import multiprocessing.util as u\nu._run_finalizers()", "proc.private_helper"),
        ("from multiprocessing.util import spawnv_passfds", "proc.os_spawn"),
        ("import multiprocessing as mp\nmp.set_executable('/bin/sh')", "proc.os_exec"),
        ("import numpy.ctypeslib", "native.ctypes"),
        ("import numpy as np\nnp.ctypeslib.load_library('libc', '/lib')", "native.ctypes"),
        ("import torch\ntorch.ops.load_library('ext.so')", "native.library"),
        ("from torch.utils.cpp_extension import load_inline", "native.library"),
        ("import gc\ngc.get_objects()", "indirect.introspection"),
        ("import gc\ngc.get_referrers(x)", "indirect.introspection"),
        ("import asyncio\ngetattr(asyncio.get_running_loop(), name)", "indirect.computed_attr"),
        ("import asyncio\nloop = asyncio.new_event_loop()\nvars(loop)", "indirect.computed_attr"),
        ("getattr(loop, 'subprocess_' + 'exec')", "proc.asyncio_subprocess"),
        ("loop._make_subprocess_transport(p, 'id', True, None, None, None)", "proc.asyncio_subprocess"),
    ],
)
def test_loader_and_internal_routes_are_rejected(code: str, rule: str) -> None:
    """Pickle payloads, written modules, import machinery, subinterpreters, private stdlib helpers,
    native loaders, gc walks and event-loop lookups by name are each rejected by their rule."""
    report = scan_static(code)
    assert rule in rules_of(report, "critical")
    assert report.verdict == "rejected"


@pytest.mark.parametrize(
    "code",
    [
        "import pickle\nwith open('model.pkl', 'rb') as f:\n    model = pickle.load(f)",
        "import pickle\nclone = pickle.loads(pickle.dumps(model))",
        "import pickle\nmsg = pickle.loads(queue.get())",
        "import pickle\nm = pickle.loads(open('m.pkl', 'rb').read())",
        "import pickle\nm = pickle.loads(open('m.pkl', 'rb').read().replace(b'\\r', b''))",
        "import pickle, zlib\nblob = zlib.decompress(open('m.z', 'rb').read())\npickle.loads(blob)",
        "import torch\ntorch.save(model.state_dict(), 'model.pth')\nstate = torch.load('model.pth')",
        "import torch\ntorch.save(model, f'ckpt/epoch{epoch}.pth')\nimport numpy",
        "import sys, os\nsys.path.insert(0, os.path.dirname(__file__))\nfrom model import Net",
        "import sys, torch\nsys.path.append('.')\ntorch.save(model, 'best.pth')",
        "import sys, torch\nif here not in sys.path:\n    sys.path.insert(0, here)\ntorch.save(model, 'best.pth')",
        "import gc\ngc.collect()",
        "import multiprocessing as mp\nmp.set_start_method('spawn')\nmp.get_context('forkserver').Pool(2)",
        "import platform, uuid\nprint(platform.system(), platform.node(), uuid.uuid4())",
        "import os\nos._exit(0)",
        "import asyncio\nloop = asyncio.new_event_loop()\nloop.run_until_complete(main())",
        "import types\nok = isinstance(f, types.FunctionType)",
        "print('Training done.')\nlabel = 'cos.'",
        "digest = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'",
        "import numpy as np\nx = np.load('x.npz', allow_pickle=True)",
        "from pathlib import Path\nPath('preds.csv').rename('submission.csv')",
        "name = 'a.b'.replace('.', '_')",
        "import json\njson.loads('{\"a\": 1}')",
    ],
)
def test_loader_look_alikes_are_approved(code: str) -> None:
    """Loading the job's own checkpoints and pickles, its own sibling modules, spawn workers, gc.collect
    and os._exit are not findings: only payloads in the source and loadable written code are."""
    report = scan_static(code)
    assert report.findings == []
    assert report.verdict == "approved"


@pytest.mark.parametrize(
    ("code", "shadow_note"),
    [
        ("def eval(s):\n    return s\ndel eval\neval('1')", "deleted again"),
        ("eval('1')\ndef eval(s):\n    return s", "used before rebinding"),
        ("if False:\n    def eval(s):\n        return s\neval('1')", "conditional rebinding"),
        ("def f():\n    [0 for eval in []]\n    return eval('1')", "comprehension variable"),
        ("def eval(s):\n    return s\ndel globals()['eval']\neval('1')", "namespace tricks"),
    ],
)
def test_uncertain_shadowing_keeps_the_builtin(code: str, shadow_note: str) -> None:
    """A builtin is only considered shadowed when that is certain at every use."""
    assert "dyn.eval" in rules_of(scan_static(code)), shadow_note


@pytest.mark.parametrize(
    ("code", "rule"),
    [
        ("open('/etc/cron.d/job', 'w')", "io.write_outside"),
        ("open('../../other_job/out.txt', mode='a')", "io.write_outside"),
        ("from pathlib import Path\nPath('/home/gpuuser/.bashrc').write_text('x')", "io.write_outside"),
        ("from pathlib import Path\np = Path('..') / 'x'\np.write_bytes(b'1')", "io.write_outside"),
        ("df.to_csv('/srv/leak.csv')", "io.write_outside"),
        ("import requests", "net.library"),
        ("import urllib.request", "net.library"),
        ("from http import client", "net.library"),
        ("import httpx", "net.library"),
        ("import aiohttp", "net.library"),
        ("import time\ntime.sleep(7200)", "time.long_sleep"),
        ("import time\ntime.sleep(24 * 60 * 60)", "time.long_sleep"),
        ("from asyncio import sleep\nawait sleep(delay=86400)", "time.long_sleep"),
    ],
)
def test_warning_rules_warn_without_rejecting(code: str, rule: str) -> None:
    """Writes outside the workdir, network libraries and long sleeps warn but do not reject."""
    report = scan_static(code)
    assert rules_of(report) == {rule}
    assert report.verdict == "warned"


@pytest.mark.parametrize("code", ["def broken(:\n    pass", "import numpy as np\nnp.zeros(3", "x = = 1", "a\x00b"])
def test_syntax_error_is_not_a_finding(code: str) -> None:
    """Unparseable code is approved with no finding; the job fails by itself when run."""
    assert scan_static(code) == ScanReport(verdict="approved", findings=[], scanner="static", model=None)


@pytest.mark.parametrize(
    "code", ["import os\nos.system('id'", "type X = int\nimport subprocess\n", "def f[T](x: T):\n    return eval(x)\n"]
)
def test_unparsable_code_naming_dangerous_apis_is_rejected(code: str) -> None:
    """Code this server cannot parse (e.g. newer syntax a node's Python accepts) is refused when it
    names a process, code or native API, so new syntax is no way around the scan."""
    report = scan_static(code)
    assert report.verdict == "rejected"
    assert rules_of(report) == {"scan.unparsed_dangerous_name"}


def test_line_numbers_point_at_the_offending_line() -> None:
    """Findings carry the line of the node that broke the rule, sorted by line."""
    code = "import numpy as np\n\nx = np.zeros(3)\nimport os\nos.system('id')\n\n\neval('1')\n"
    report = scan_static(code)
    assert [(f.line, f.rule) for f in report.findings] == [(5, "proc.os_system"), (8, "dyn.eval")]


@pytest.mark.parametrize("depth", [900, 5000])
def test_deep_nesting_is_rejected_as_unscannable(depth: int) -> None:
    """Code too deep for the visitor (900) or for the parser (5000) is rejected, never waved through."""
    report = scan_static("x = " + "-" * depth + "1\n")
    assert report.verdict == "rejected"
    assert rules_of(report) == {"scan.unscannable"}


def test_moderate_nesting_is_scanned() -> None:
    """Ordinary nesting depth is scanned normally."""
    assert scan_static("x = " + "-" * 100 + "1\n").verdict == "approved"


def test_format_findings_reads_as_the_http_message() -> None:
    """format_findings gives `line N: message [rule]` joined by semicolons."""
    report = scan_static("import os\n\nos.system('id')\neval('2')")
    assert format_findings(report.findings) == (
        "line 3: os.system executes a shell command [proc.os_system]; "
        "line 4: eval runs code built at run time [dyn.eval]"
    )


def test_every_finding_names_a_rule_of_the_table() -> None:
    """Findings over the whole corpus use only rule ids from the table, with its severity."""
    for path in MALICIOUS + LEGIT:
        for finding in scan_static(path.read_text()).findings:
            assert isinstance(finding, Finding)
            assert finding.severity == RULES[finding.rule].severity
