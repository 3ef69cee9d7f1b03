"""What holysheep-lab reports, one module each (import the module you need; nothing loads here):

* `holysheep_lab.reports.html` — the **spend report**: ``hs.report(df)`` / ``df.hs.report()`` ->
  `Report`, a self-contained HTML page of charts and tables for people (needs pandas, altair).
* `holysheep_lab.reports.usage` — the **usage report**: ``client.usage_report(days)`` and the
  server's ``/usage``, a small JSON-ready dict of totals (pandas-free).
* `holysheep_lab.reports.budget` — **budget status**: where each budget line stands,
  ``client.budget_status()`` from the ledger; ``df.hs.budget_status()`` gives the same columns
  from a log (pandas-free).
* `holysheep_lab.reports.prices` — **price tables as text**: what ``holysheep-lab prices
  list | search | show`` prints (pandas-free).
"""
