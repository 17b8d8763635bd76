"""GitOps: what a new configuration version would do to the live system, and deploying it.

``versions`` turns a directory (or a stored version) into a ``Snapshot``; ``diff`` compares
documents field by field; ``impact`` checks the live state (records in stages, runs in flight,
care already run today, field values); ``blast`` counts what changed care processes would send;
``plan`` puts it together; ``deploy`` applies a plan atomically; ``replay`` re-runs a period of
recorded changes through a proposed version.
"""
