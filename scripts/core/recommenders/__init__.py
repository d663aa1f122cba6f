"""Recommender algorithms, one module per model, all fitted on ``user_items`` (n_users, n_items).

``RECOMMENDERS`` maps the registry name used in configs to the class.
"""

from .als import ALSRecommender
from .base import Recommender, mask_seen, topk
from .bpr import BPRRecommender
from .ease import EASERecommender
from .friends import FriendsRecommender
from .item2item import Item2ItemRecommender
from .itemknn import ItemKNNRecommender
from .popular import PopularRecommender

RECOMMENDERS: dict[str, type[Recommender]] = {
    cls.name: cls
    for cls in (
        ALSRecommender,
        BPRRecommender,
        EASERecommender,
        FriendsRecommender,
        Item2ItemRecommender,
        ItemKNNRecommender,
        PopularRecommender,
    )
}

__all__ = [
    "RECOMMENDERS",
    "ALSRecommender",
    "BPRRecommender",
    "EASERecommender",
    "FriendsRecommender",
    "Item2ItemRecommender",
    "ItemKNNRecommender",
    "PopularRecommender",
    "Recommender",
    "mask_seen",
    "topk",
]
