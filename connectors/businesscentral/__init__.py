"""Microsoft Dynamics 365 Business Central (API v2.0): `normalise` reads its salesOrder, customer and
item JSON into Koppel's canonical model."""
