"""Jobs: what the daemon does with Ark once the ledger holds an entry.

- :mod:`dropzone.jobs.submitter`: the exactly-once protocol for one entry (claim, Create,
  outcome), with the platform's duplicate guard as an outcome;
- :mod:`dropzone.jobs.prior`: the platform as the second ledger, a version's job found by its
  tag before it is created;
- :mod:`dropzone.jobs.policy`: what to do after a failed Create call (pure);
- :mod:`dropzone.jobs.tracker`: the phases of jobs that are not finished yet;
- :mod:`dropzone.jobs.reachability`: whether Ark answers, outages declared and ended once each.
"""
