"""Renderers: result objects in, text / JSON documents / SARIF out. No analysis happens here, and
nothing here reads a file or writes to a stream: a command hands a library result to a renderer and
writes what it returns (:mod:`kmodsim.commands.common`: ``dump_json``, ``args.echo``).

One module per result family; each owns the JSON schema of its command (README.md and docs/*.md
document those schemas and point here):

* :mod:`kmodsim.render.modules` -- ``inspect`` (modinfo-like text; the ``inspect --json`` object)
  and ``scan`` (the summary line; ``scan --json``);
* :mod:`kmodsim.render.ldd` -- ``ldd`` (one line an import; ``ldd --json``);
* :mod:`kmodsim.render.check` -- ``check`` findings: modpost-style text, ``--format json`` and
  SARIF 2.1.0;
* :mod:`kmodsim.render.footprint` -- ``footprint`` (the size table, ``--merge``'s what-if; JSON);
* :mod:`kmodsim.render.loader` -- ``load`` / ``verify`` (the dmesg-like transcript, ``--compare``'s
  lines).
* :mod:`kmodsim.render.fetch` -- ``fetch-kernel`` (text, ``--shell``, ``--json``);
* :mod:`kmodsim.render.abi` -- ``abi diff`` / ``abi history`` (grouped text, the table; JSON).

The ops census keeps its renderer inside its package (:mod:`kmodsim.ops.render`), and depmod's
outputs are written by :mod:`kmodsim.dependencies`.

Renderers are imported only by the command that runs (start-up time): importing this package
imports none of them.
"""
