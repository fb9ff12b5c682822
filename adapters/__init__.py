"""Environment adapters, installed as `aql_agent.adapters` (the folder is `adapters/` in the checkout).

The bare import name `adapters` belongs to another PyPI package, so pyproject.toml maps this folder into the
`aql_agent` namespace: `from aql_agent.adapters import gym`.
"""
