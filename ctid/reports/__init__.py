"""Operator reports for ctid: CDR summaries with CSV/XLSX export and charts, staffing
sweeps of the ACD simulation, and a progress line for long work.

    from ctid.reports.cdr_report import summarize, format_text
    report = summarize(store.cdrs(since, until), tz, since, until)
    print(format_text(report))
    from ctid.reports.export import write_csv, write_xlsx       # files
    from ctid.reports.plot import plot_calls, plot_acd_sweep    # PNG charts (matplotlib)
    from ctid.reports.acd_sweep import sweep, parse_agents      # staffing levels
    from ctid.reports.progress import Progress                  # long work

`ctictl report cdr|acd-sim-plot` and `ctictl bench report` are in cli.py.
"""
