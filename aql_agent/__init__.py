"""aql-agent: offline reinforcement learning for game AI.

Data flows one way: replay log -> dataset -> learner -> checkpoint -> policy -> adapter.
"""

__version__ = "0.1.0"
