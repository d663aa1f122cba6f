"""The re-ranking stage: the ranker's lists made into the lists a listener is served.

Steps (:mod:`encore.reranking.steps`), each off-able by its setting: exclusions (a global
block list and each user's rejected items), a freshness boost by item age, new-item
candidates from content, MMR diversity over item embeddings with an optional cap per
attribute, a global exposure cap across users and a new-item exposure floor
(:mod:`~encore.reranking.spread`: the cap, and new items placed at the content generator's
rank). One function (:func:`~encore.reranking.steps.rerank`) re-ranks a batch of users'
lists; the ``rerank`` component and the serving model both call it, so offline and served
lists are the same for the same inputs.

This package's :mod:`~encore.reranking.steps` imports numpy only (the serving process loads
it); the settings model of the experiment config is :mod:`encore.reranking.config`.
"""
