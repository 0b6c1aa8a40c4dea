"""Engine Control: which engine may run which action on which platform, now.

``rules`` decides (pure), ``registry`` holds the state (engines and their hashed keys,
platform statuses, feature flags, the audit log), ``policy`` asks with a short cache and audits
every check, ``client`` asks a remote Engine Control over HTTP, ``service`` is what the API and
the CLI call to read and change it, and ``reconcile`` applies a declarative ``policy.yaml``.
"""
