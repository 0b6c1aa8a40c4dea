"""The vault: credentials per project and platform (optionally per user), encrypted at rest.

``crypto`` holds the keys and seals values (AES-256-GCM, associated data binding each value to
its row); ``store`` reads and writes credentials, values only to the engine at call time.
"""
