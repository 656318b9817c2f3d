"""The ledger contract: what every ledger store must do, the one place it is specified.

Each test takes ``ledger`` (a store's handle, as the daemon holds it) or ``store`` (to open
more handles on the same ledger, as other processes do); both are parametrised by
:data:`tests.ledger_contract.conftest.STORES`, so a new store is one entry there and passes
this suite unchanged. A store's own promises (a file's lock, a server's connection) are
tested beside it (``tests/test_ledger_sqlite.py``).
"""
