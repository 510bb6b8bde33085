"""Organization: effective-dated unit tree, sites, users, roles and their scopes."""
