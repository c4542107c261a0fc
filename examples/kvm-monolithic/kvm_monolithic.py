"""The 2019 "KVM monolithic" experiment on Debian's own 6.1 KVM, end to end (driver of run.sh).

Builds KVM out of tree from Debian's linux-source-6.1 against Debian's headers in two layouts
(build.py), then answers the thread's questions with kmodsim's CLI and checks the answers against
independent sources: Debian's signed modules and Module.symvers, modpost itself, and the real 6.1
kernel booted under QEMU. ``run()`` returns every result as one dict (tests/test_kvm_monolithic.py
asserts on it); ``main()`` prints the tables.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import build  # noqa: E402

SCRIPTS = os.path.join(HERE, "scripts")
ALLOW = os.path.join(HERE, "allow.toml")
MONO = {"kvm-intel": "mono-intel", "kvm-amd": "mono-amd"}
_VENV_CLI = os.path.join(os.path.dirname(sys.executable), "kmodsim")
KMODSIM = [_VENV_CLI if os.path.exists(_VENV_CLI) else (shutil.which("kmodsim") or "kmodsim")]


def kmodsim(*args: str, cwd: str | None = None, ok=(0,)) -> subprocess.CompletedProcess:
    p = subprocess.run([*KMODSIM, *map(str, args)], capture_output=True, text=True, cwd=cwd)
    if p.returncode not in ok:
        raise RuntimeError(f"kmodsim {' '.join(map(str, args[:3]))} ...: exit {p.returncode}\n{p.stderr[-3000:]}")
    return p


def debian_kernel():
    """Debian's 6.1 image (modules, vmlinuz) and its headers, as ``kmodsim fetch-kernel --json`` finds them."""
    doc = json.loads(kmodsim("fetch-kernel", "--json").stdout)
    return doc


# ---------------------------------------------------------------------------------------------
# Inputs: source, builds, a workspace for the load scripts
# ---------------------------------------------------------------------------------------------

def prepare(jobs: int | None = None, log=print) -> dict:
    k = debian_kernel()
    headers = k["headers"]
    version = build.headers_version(headers)
    t0 = time.monotonic()
    src = build.source_tree(version)
    log(f"# source: {build.SOURCE_PACKAGE} {version} -> {src} ({time.monotonic() - t0:.1f} s)")
    dirs = {}
    for layout in build.LAYOUTS:
        t0 = time.monotonic()
        dirs[layout] = build.build(layout, src, headers, jobs)
        log(f"# build {layout}: {dirs[layout]} ({time.monotonic() - t0:.1f} s)")
    mods = {
        "normal": build.modules_of(dirs["normal"]),
        "mono": {m: build.modules_of(dirs[lay])[m] for m, lay in MONO.items()},
    }
    debian_dir = os.path.join(k["modules"], "kernel", "arch", "x86", "kvm")
    deps = {"irqbypass": os.path.join(k["modules"], "kernel", "virt", "lib", "irqbypass.ko"),
            "ccp": os.path.join(k["modules"], "kernel", "drivers", "crypto", "ccp", "ccp.ko")}
    ws = os.path.join(build.cache_root(), "kvm-monolithic", "workspace")
    shutil.rmtree(ws, ignore_errors=True)
    for layout, files in mods.items():
        os.makedirs(os.path.join(ws, layout))
        for name, path in files.items():
            os.symlink(path, os.path.join(ws, layout, name + ".ko"))
    return {"kernel": k, "headers": headers, "version": version, "src": src, "builds": dirs, "modules": mods,
            "debian": {m: os.path.join(debian_dir, m + ".ko") for m in ("kvm", "kvm-intel", "kvm-amd")},
            "deps": deps, "workspace": ws}


# ---------------------------------------------------------------------------------------------
# 0. The normal layout equals Debian's signed modules
# ---------------------------------------------------------------------------------------------

def debian_equality(ctx: dict) -> list[dict]:
    from kmodsim.elf import SHF_ALLOC
    from kmodsim.module import read_module

    rows = []
    for name, path in ctx["modules"]["normal"].items():
        ours, theirs = read_module(path), read_module(ctx["debian"][name])
        a = {s.name: s.size for s in ours.sections if s.flags & SHF_ALLOC}
        b = {s.name: s.size for s in theirs.sections if s.flags & SHF_ALLOC}
        differ = sorted(n for n in a.keys() | b.keys() if a.get(n) != b.get(n))
        ce = {e.name: e.crc for e in ours.exports}
        de = {e.name: e.crc for e in theirs.exports}
        rows.append({"module": name, "alloc_sections": len(a), "differing_sections": differ,
                     "modinfo_bytes": (a.get(".modinfo"), b.get(".modinfo")),
                     "exports": len(ce), "crc_equal": ce == de})
    return rows


# ---------------------------------------------------------------------------------------------
# 1. Duplicate exports: kmodsim check, the allowlist, modpost in-tree style
# ---------------------------------------------------------------------------------------------

def check(ctx: dict) -> dict:
    h, m, d = ctx["headers"], ctx["modules"], ctx["deps"]
    mono_set = [d["irqbypass"], d["ccp"], m["mono"]["kvm-intel"], m["mono"]["kvm-amd"]]
    plain = kmodsim("check", "--kernel", h, "--format", "json", "--no-cache", *mono_set, ok=(0, 1))
    allowed = kmodsim("check", "--kernel", h, "--format", "json", "--no-cache", "--allow", ALLOW, *mono_set,
                      ok=(0, 1))
    text = kmodsim("check", "--kernel", h, "--no-cache", *mono_set, ok=(0, 1)).stdout.splitlines()
    normal_set = [d["irqbypass"], d["ccp"], *(m["normal"][n] for n in ("kvm", "kvm-intel", "kvm-amd"))]
    normal = kmodsim("check", "--kernel", h, "--format", "json", "--no-cache", *normal_set, ok=(0, 1))
    f = json.loads(plain.stdout)["findings"]
    return {"exit": plain.returncode, "findings": f, "text": text,
            "duplicates": sorted(x["symbol"] for x in f if x["check"] == "duplicate-export"),
            "allowed_exit": allowed.returncode, "allowed_findings": json.loads(allowed.stdout)["findings"],
            "normal_exit": normal.returncode, "normal_findings": json.loads(normal.stdout)["findings"]}


def modpost_intree(ctx: dict) -> dict:
    """modpost over both monolithic modules in one run, as an in-tree build runs it (no ``-e``), and
    the same with ``-e`` (an external M= build). The input symbol table is Debian's Module.symvers
    without arch/x86/kvm's rows: a monolithic tree has no kvm.ko. Run in a scratch directory (modpost
    writes *.mod.c next to the modules it reads)."""
    modpost = os.path.join(ctx["headers"], "scripts", "mod", "modpost")
    out = {}
    for mode, extra in (("in-tree", []), ("external", ["-e"])):
        scratch = os.path.join(build.cache_root(), "kvm-monolithic", f"modpost-{mode}")
        shutil.rmtree(scratch, ignore_errors=True)
        os.makedirs(scratch)
        for name, layout in MONO.items():
            kdir = os.path.join(ctx["builds"][layout], "arch", "x86", "kvm")
            os.symlink(os.path.join(kdir, name + ".o"), os.path.join(scratch, name + ".o"))
            shutil.copy(os.path.join(kdir, name + ".mod"), scratch)
        with open(os.path.join(ctx["headers"], "Module.symvers"), encoding="utf-8") as f, \
                open(os.path.join(scratch, "in.symvers"), "w", encoding="utf-8") as g:
            g.writelines(ln for ln in f if not ln.split("\t")[2].startswith("arch/x86/kvm/"))
        cmd = [modpost, "-m", *extra, "-o", "out.symvers", "-i", "in.symvers", "-T", "-"]
        p = subprocess.run(cmd, input="kvm-intel.o\nkvm-amd.o\n", capture_output=True, text=True, cwd=scratch)
        out[mode] = {"cmd": " ".join(["modpost", *cmd[1:]]), "exit": p.returncode,
                     "lines": (p.stdout + p.stderr).splitlines()}
    return out


# ---------------------------------------------------------------------------------------------
# 2. Loading: the model and the real kernel, script by script
# ---------------------------------------------------------------------------------------------

def scripts() -> list[str]:
    return sorted(os.path.join(SCRIPTS, f) for f in os.listdir(SCRIPTS) if f.endswith(".script"))


def load_verify(ctx: dict) -> list[dict]:
    h, tree, ws = ctx["headers"], ctx["kernel"]["modules"], ctx["workspace"]
    out = []
    for s in scripts():
        model = json.loads(kmodsim("load", "--kernel", h, "--modules", tree, "--script", s, "--json",
                                   cwd=ws, ok=(0, 1)).stdout)
        t0 = time.monotonic()
        v = kmodsim("verify", "--kernel", h, "--modules", tree, "--vmlinuz", ctx["kernel"]["vmlinuz"],
                    "--script", s, "--json", "--compare", cwd=ws, ok=(0, 1))
        real = json.loads(v.stdout)
        out.append({"script": os.path.basename(s), "verify_exit": v.returncode, "model": model, "kernel": real,
                    "differences": real.get("differences", []), "seconds": round(time.monotonic() - t0, 1)})
    return out


# ---------------------------------------------------------------------------------------------
# 3. Footprint, against /proc/modules
# ---------------------------------------------------------------------------------------------

def footprint(ctx: dict, runs: list[dict]) -> dict:
    from kmodsim.oracle.boot import strip_module

    files = {("normal", n): p for n, p in ctx["modules"]["normal"].items()}
    files.update({("mono", n): p for n, p in ctx["modules"]["mono"].items()})
    # The modules as shipped and loaded: debug info stripped (Debian's packaging strips modules, and
    # `kmodsim verify` loads stripped copies). The init layout holds the whole symbol table, so its
    # size depends on that; the core layout does not.
    with tempfile.TemporaryDirectory(prefix="kvm-footprint-") as tmp:
        shipped = []
        for (lay, n), p in files.items():
            dest = os.path.join(tmp, f"{lay}-{n}.ko")
            strip_module(p, dest)  # the copy `kmodsim verify` packs for the guest
            shipped.append(dest)
        doc = json.loads(kmodsim("footprint", "--kernel", ctx["headers"], "--json", *shipped).stdout)
    model = {key: m["size"] for key, m in zip(files, doc["modules"], strict=True)}
    model_init = {key: m["init_size"] for key, m in zip(files, doc["modules"], strict=True)}
    # What the kernel showed, by the module file each step loaded (the step's command): the size in
    # /proc/modules after a successful load, and the core/init sizes a kprobe on do_init_module()
    # read from struct module — also for kvm-intel, whose init fails under TCG (no VMX).
    seen: dict[tuple[str, str], set[int]] = {}
    formed: dict[tuple[str, str], set[tuple[int, int]]] = {}
    for r in runs:
        for st in r["kernel"]["steps"]:
            w = st["cmd"].split()
            if w[0] != "insmod":
                continue
            layout, name = w[1].split("/")[0], os.path.basename(w[1])[:-3]
            for f in st.get("formed") or []:
                if f["name"] == name.replace("-", "_"):
                    formed.setdefault((layout, name), set()).add((f["core"], f["init"]))
            if st["errno"]:
                continue
            for m in st["modules"]:
                if m["name"] == name.replace("-", "_"):
                    seen.setdefault((layout, name), set()).add(m["size"])
    rows = [{"layout": lay, "module": n, "model": model[(lay, n)], "model_init": model_init[(lay, n)],
             "proc_modules": sorted(seen.get((lay, n), [])),
             "formed": [list(x) for x in sorted(formed.get((lay, n), []))]}
            for (lay, n) in files]
    for row in rows:
        row["observed"] = bool(row["proc_modules"] or row["formed"])
        row["exact"] = row["observed"] and row["proc_modules"] in ([], [row["model"]]) and \
            row["formed"] in ([], [[row["model"], row["model_init"]]])
    per_host = {}
    for vendor in ("kvm-intel", "kvm-amd"):
        normal = model[("normal", "kvm")] + model[("normal", vendor)]
        mono = model[("mono", vendor)]
        per_host[vendor] = {"normal": normal, "mono": mono, "saved": normal - mono}
    return {"rows": rows, "per_host": per_host}


# ---------------------------------------------------------------------------------------------
# 4. ops: what a monolithic layout could call directly; indirect and static calls in the binaries
# ---------------------------------------------------------------------------------------------

def ops(ctx: dict) -> dict:
    src = ctx["src"]
    paths = [os.path.join(src, d) for d in build.SOURCE_DIRS]
    census = json.loads(kmodsim("ops", *paths, "--struct", "kvm_x86_ops", "--json", ok=(0, 1)).stdout)
    idioms: dict[str, int] = {}
    for m in census["members"]:
        for c in m["call_sites"]:
            idioms[c["idiom"]] = idioms.get(c["idiom"], 0) + 1
    plans = {}
    for inst in ("vmx_x86_ops", "svm_x86_ops"):
        plan = json.loads(kmodsim("ops", *paths, "--struct", "kvm_x86_ops", "--emit", "plan", "--json",
                                  "--instance", inst, ok=(0, 1)).stdout)["plan"]
        conv: dict[str, int] = {}
        for member in plan:
            for site in member["sites"]:
                conv[site["conversion"]] = conv.get(site["conversion"], 0) + 1
        plans[inst] = {"members_direct": sum(1 for x in plan if x["conversion"] == "direct"),
                       "sites": conv}
    files = [*ctx["modules"]["normal"].values(), *ctx["modules"]["mono"].values()]
    binary = json.loads(kmodsim("ops", "--binary", *files, "--json").stdout)["modules"]
    labels = [f"normal/{n}" for n in ctx["modules"]["normal"]] + [f"mono/{n}" for n in ctx["modules"]["mono"]]
    bins = [{"module": lab, "indirect_calls": b["indirect_calls"], "static_call_sites": b["static_call_sites"],
             "kvm_x86_static_calls": sum(v for k, v in b["static_calls_by_key"].items() if k.startswith("kvm_x86_"))}
            for lab, b in zip(labels, binary, strict=True)]
    return {"members": len(census["members"]), "call_sites": idioms, "mismatches": census["mismatches"],
            "plans": plans, "binary": bins}


# ---------------------------------------------------------------------------------------------

def run(jobs: int | None = None, log=print) -> dict:
    t0 = time.monotonic()
    ctx = prepare(jobs, log)
    res = {"ctx": ctx, "debian": debian_equality(ctx), "check": check(ctx), "modpost": modpost_intree(ctx)}
    res["runs"] = load_verify(ctx)
    res["footprint"] = footprint(ctx, res["runs"])
    res["ops"] = ops(ctx)
    exports = {e for e in _exports(ctx["modules"]["normal"]["kvm"])}
    res["kvm_exports"] = sorted(exports)
    res["seconds"] = round(time.monotonic() - t0, 1)
    return res


def _exports(path: str) -> list[str]:
    from kmodsim.module import read_module

    return [e.name for e in read_module(path).exports]


def table(head: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def render(res: dict) -> str:
    ctx = res["ctx"]
    out = [f"## KVM monolithic on Debian's {ctx['kernel']['kver']} (linux-source-6.1 {ctx['version']})", ""]
    out += ["### 0. normal layout vs Debian's signed modules (SHF_ALLOC section sizes, export CRCs)", ""]
    out.append(table(["module", "alloc sections", "differing", ".modinfo ours/Debian", "exports", "CRCs equal"],
                     [[r["module"], r["alloc_sections"], ", ".join(r["differing_sections"]) or "none",
                       "{}/{}".format(*r["modinfo_bytes"]), r["exports"], r["crc_equal"]] for r in res["debian"]]))
    c = res["check"]
    dup = set(c["duplicates"])
    out += ["", "### 1. duplicate exports", ""]
    out.append(table(["question", "answer"], [
        ["kvm.ko exports", len(res["kvm_exports"])],
        ["`kmodsim check` duplicate-export findings (mono kvm-intel + kvm-amd)", len(c["duplicates"])],
        ["... equal to the set of kvm.ko's exports", dup == set(res["kvm_exports"])],
        ["other findings", len(c["findings"]) - len(c["duplicates"])],
        ["`check` exit without / with allow.toml", f"{c['exit']} / {c['allowed_exit']}"],
        ["findings left with allow.toml", len(c["allowed_findings"])],
        ["normal layout: findings (exit)", f"{len(c['normal_findings'])} ({c['normal_exit']})"],
        *[[f"modpost {mode} (`{v['cmd']}`): lines (exit)", f"{len(v['lines'])} ({v['exit']})"]
          for mode, v in res["modpost"].items()],
    ]))
    out += ["", "first lines: `kmodsim check` / modpost in-tree:", "```"]
    out += sorted(c["text"])[:3] + ["..."] + res["modpost"]["in-tree"]["lines"][:3] + ["...", "```"]
    out += ["", "### 2. load (model) vs verify (Debian's 6.1 under QEMU/TCG)", ""]
    rows = []
    for r in res["runs"]:
        for ms, ks in zip(r["model"]["steps"], r["kernel"]["steps"], strict=True):
            msg = next((x for x in ks["messages"] if "duplicate" in x or "hardware" in x or "already" in x), "")
            rows.append([r["script"], ms["cmd"], ms["errname"] or 0, ks["errname"] or 0, msg])
    out.append(table(["script", "step", "model", "kernel", "kernel line"], rows))
    out += ["", "verify --compare: " + ", ".join(f"{r['script']} exit {r['verify_exit']} "
                                                 f"({len(r['differences'])} differences)" for r in res["runs"])]
    fp = res["footprint"]
    out += ["", "### 3. footprint (bytes: /proc/modules after a load; core + init at do_init_module())", ""]
    out.append(table(["layout", "module", "model (core + init)", "/proc/modules", "do_init_module (core + init)",
                      "exact"],
                     [[r["layout"], r["module"], f"{r['model']} + {r['model_init']}",
                       ", ".join(map(str, r["proc_modules"])) or "init fails under TCG",
                       ", ".join(f"{c} + {i}" for c, i in r["formed"]) or "-", r["exact"]]
                      for r in fp["rows"]]))
    out += [""]
    out.append(table(["host", "normal (kvm + vendor)", "monolithic", "saved"],
                     [[v, x["normal"], x["mono"], f"{x['saved']} B ({x['saved'] // 4096} pages)"]
                      for v, x in fp["per_host"].items()]))
    o = res["ops"]
    out += ["", "### 4. ops: kvm_x86_ops", "",
            f"members: {o['members']}; call sites: " + ", ".join(f"{k} {v}" for k, v in sorted(o["call_sites"].items()))
            + f"; mismatches with kvm-x86-ops.h: {', '.join(x['member'] for x in o['mismatches']) or 'none'}", ""]
    out.append(table(["instance linked in", "members callable directly", "sites by conversion"],
                     [[i, p["members_direct"], ", ".join(f"{k} {v}" for k, v in sorted(p["sites"].items()))]
                      for i, p in o["plans"].items()]))
    out += [""]
    out.append(table(["module", "indirect calls", "static-call sites", "of them kvm_x86_*"],
                     [[b["module"], b["indirect_calls"], b["static_call_sites"], b["kvm_x86_static_calls"]]
                      for b in o["binary"]]))
    out += ["", f"total time: {res['seconds']} s"]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=None)
    ap.add_argument("--json", metavar="FILE", help="also write every result as JSON")
    a = ap.parse_args(argv)
    res = run(a.jobs, log=lambda s: print(s, file=sys.stderr))
    sys.stdout.write(render(res))
    if a.json:
        with open(a.json, "w", encoding="utf-8") as f:
            json.dump(res, f, indent=1, default=list)
    bad = [r["script"] for r in res["runs"] if r["verify_exit"] != 0]
    ok = not bad and set(res["check"]["duplicates"]) == set(res["kvm_exports"]) and not res["check"]["allowed_findings"]
    ok = ok and all(r["exact"] for r in res["footprint"]["rows"])  # every module observed, and exact
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
