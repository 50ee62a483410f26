"""The ranking stage: click models over every feature of the user, the item and the moment
(`ClickModel` and its subclasses), trained on `recforge.data.events.Events`."""
