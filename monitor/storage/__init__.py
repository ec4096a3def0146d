"""Storage: schema, the batch writer and migrations. Everything that talks SQL lives here."""
