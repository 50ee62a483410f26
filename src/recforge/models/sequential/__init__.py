"""Sequential recommenders on each user's (or session's) time-ordered items: GRU4Rec, SASRec
and BERT4Rec, sharing `recforge.models.sequential.base.SequentialRecommender` (imports torch;
the registry imports them lazily).
"""
