"""The experiment kinds of ``ndjax run``, one module each.

Each module holds ``SCHEMA`` (the :class:`~ndjax.cli._schema.Table` of its configs, without
``kind``), ``RESUMABLE`` (whether a run into a folder holding an interrupted run of the same inputs
resumes it), ``input_files(cfg, source) -> dict[str, Path]`` (every file a run reads, by the
dotted config key that names it, paths resolved against the config file ``source``: the runner
records their contents' sha256 in the run folder's ``manifest.json`` and resumes only onto the
same contents), ``prepare(cfg, source)`` (builds everything and checks it against the core, raising
:class:`~ndjax.cli._schema.ConfigError` before any folder is made or any solve runs; returns
``execute(run_dir) -> ok``) and ``run(...)`` (what ``execute`` does: solve and write the results
through the :class:`~ndjax.cli._rundir.RunDir`).
"""
