"""Identity and access, without HTTP: AK/SK signatures (`signing`), roles and their ModelArts
actions (`roles`), keys and tokens (`secrets`, `tokens`), passwords, lockout, the IdentityStore
interface (`store`, on SQL in `sql_store`, its tables in `schema`), administration, first-start
bootstrap, and the keys of temporary log links (`links`)."""
