"""Everything a user reads, rendered from results and never by running a model: the results table
(``table``), the verdict's wording of the protocol (``verdict``), the gate report (``gate``), the
model card (``model_card``), batch prediction's table and confusion CSV (``predict``), the
label-efficiency table and figure (``sweep``), the source ranking's table, report and plot
(``ranking``), the figures (``plots``) and where the stages' time went (``timing``: a stage's
progress card, the run's summary line).

Import the module you need (``from warmstart.reports import table``); this package imports none
of them itself, so ``warmstart.promotion`` can use the verdict text without a cycle.
"""
