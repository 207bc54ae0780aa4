"""gongche scheduler package: plan official-car days.

Modules (``scheduler`` imports only ``geo`` among gongche's packages; solver libraries are
imported lazily where possible so that the model can be used without them):

* :mod:`scheduler.model` — solver-independent problem model and plan (dataclasses)
* :mod:`scheduler.validate` — independent validator of any plan
* :mod:`scheduler.solver` — OR-Tools routing model and the portfolio search (``solve``)
* :mod:`scheduler.explain` — pre-checks and relaxation-based reasons for unserved bookings
* :mod:`scheduler.insert` — fast cheapest feasible insertion and emergency pre-emption
* :mod:`scheduler.drivers` — CP-SAT driver pairing
* :mod:`scheduler.instances` — Li & Lim, Solomon and Cordeau parsers, BKS tables
* :mod:`scheduler.baselines` — greedy insertion baseline
* :mod:`scheduler.vroom_adapter`, :mod:`scheduler.pyvrp_adapter` — peer engines
"""
