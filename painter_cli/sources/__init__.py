"""Raw datasets in their original on-disk layouts -> ``Sample`` streams (see ``base.py``)."""
