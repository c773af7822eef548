"""Everything a user reads, rendered from results and never by running a model: the results table
(``table``), the verdict's wording of the protocol (``verdict``), the gate report (``gate``), the
model card (``model_card``), batch prediction's table and confusion CSV (``predict``), the
label-efficiency table and figure (``sweep``), the source ranking's table, report and plot
(``ranking``) and the figures (``plots``).

Import the module you need (``from warmstart.reports import table``); this package imports none
of them itself, so ``warmstart.promotion`` can use the verdict text without a cycle.
"""
