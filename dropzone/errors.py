"""One tree for every error dropzone raises on purpose, sorted by what the caller must do.

A command's caller has one question, and the two branches answer it: was what I gave the
command wrong (:class:`ConfigurationError`: fix it and run again, exit 2), or did the command
run and meet something that failed or refused it (:class:`OperationalError`: the message says
what, and whether running again later can succeed, exit 1)?
``dropzone.commands.exits.EXITS`` is the one table from these classes to exit codes and
message lines; none reaches the terminal as a traceback.

::

    DropzoneError                         everything dropzone raises on purpose
    ├── ConfigurationError                exit 2: what the command was given is wrong (the config,
    │   │                                 the command line, what a setting names); found before
    │   │                                 anything changes, and running it as is fails the same way
    │   ├── UsageError                    an argument or a setting the command cannot use
    │   ├── ConfigError                   the config file cannot be used (every problem listed)
    │   ├── CommandUsageError             emulator options that do not go together
    │   ├── ListenError                   daemon.listen cannot be listened on
    │   └── LedgerUnusable [+LedgerError] no usable ledger at [ledger] path or url: not a ledger,
    │       │                             a schema this dropzone cannot use, or it cannot be made,
    │       │                             opened or locked there (a disk full at the start included)
    │       ├── LedgerLocked              another dropzone holds it (the message gives its pid)
    │       └── LedgerMissing             none where the config points: nothing has run with it
    ├── OperationalError                  exit 1: the command ran, and what it met failed or refused
    │   │                                 it (a full disk, the store, the platform, an entry that
    │   │                                 changed meanwhile); what failed was not done
    │   ├── LedgerFailed [+LedgerError]   the open ledger could not be read or written (a full
    │   │                                 disk, a read-only file); the change was rolled back whole
    │   ├── EntryNotFound [+LedgerError]  no entry with that id (forgotten or pruned meanwhile)
    │   ├── InvalidTransition [+LedgerError]  the entry is not in a state the change starts from
    │   ├── ClaimLost [+LedgerError]      another node took the attempt's claim over meanwhile
    │   ├── FirstStartHeld                a watch's first start waits for the operator's choice
    │   ├── SourceError                   the store could not be read this time (network, 5xx)
    │   │   ├── SourceConfigError         the store refuses us until the config changes (no such
    │   │   │                             bucket, access denied)
    │   │   ├── ObjectRefused             the store refused this one object, for good
    │   │   ├── FileGone                  a local file went away between its sighting and its read
    │   │   └── FileUnreadable            a local file is there and cannot be read
    │   └── ArkError                      the platform's answer (dropzone.ark.errors says more)
    │       ├── Duplicate                 an outcome: the active job for this input was named
    │       ├── RetryableError            calling again later may succeed
    │       │   ├── Throttled             429 and the throttling codes
    │       │   └── Transient             5xx, time-outs, connection errors
    │       ├── Rejected                  this request is refused for good
    │       └── Held                      the account or its setup must change (a hint says how)
    │           ├── AuthError             the credentials or the clock are wrong
    │           ├── AccountError          the account cannot do it yet
    │           ├── EndpointError         what answered is not Ark's management API
    │           └── TrustStoreError       the CA certificates to verify Ark by cannot be loaded
    └── LedgerError                       the ledger's family: the second parent of the classes
                                          marked [+LedgerError], so that code catching whatever
                                          the ledger raises (the daemon logs it and goes on)
                                          catches them all; never raised itself

Where a class sits is decided by when its cause can be known. A setting that only the outside
world refuses (a bucket that does not exist, a wrong key, another service at the endpoint) is
found by asking it, as ``dropzone check`` does: an OperationalError whose message names the
setting, exit 1 as ``check`` has always given it. A ledger that cannot be opened stops a
command before it has begun, whatever the cause; one that fails a write has a command half way
through, and each of the ledger's changes is one transaction, so the failed one left nothing
behind.

This module imports nothing of dropzone's: each class above is declared where it is raised and
imports its branch from here.
"""

from __future__ import annotations


class DropzoneError(Exception):
    """Base of every error dropzone raises on purpose."""


class ConfigurationError(DropzoneError):
    """What the command was given is wrong: fix it and run the command again (exit 2)."""


class OperationalError(DropzoneError):
    """The command ran and what it met failed or refused it; what failed was not done (exit 1)."""
