"""Venues joined by a link (ARCHITECTURE "Across venues", X1–X7): the messages the committee
signs (certificates, pledge orders), deploying a VenueLink per venue, and the link's state rebuilt
from its events. See contracts/interfaces/IVenueLink.sol."""
