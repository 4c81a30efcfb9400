-- btree_gin lets one GIN index lead with the tenant and then match names
-- by trigram: a search inside one tenant's directory reads that tenant's
-- entries, not every tenant's matches. Trusted (PostgreSQL 13 and later),
-- so the service's own role may create it, like pg_trgm.
CREATE EXTENSION IF NOT EXISTS btree_gin;
