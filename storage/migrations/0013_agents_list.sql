-- GET /api/agents sorts by any column the dashboard shows and filters by
-- status, OS, version and group (api.md, issue 13). Each sort walks its
-- own index in order and stops at the page's end, so a page costs the
-- same at row 50 and at row 100k, with no sort of the table.
--
-- A nullable column sorts as ifnull(col, ''): the keyset compares row
-- values (sort value, pc_id), which a NULL would break; storage/agents_list.go
-- writes the same expressions, which is what lets SQLite use these indexes.
--
-- The sort indexes carry the columns the filters test (last_heartbeat for
-- the status, os, version, hostname for q=), so a filtered walk tests each
-- entry in the index and reads the table only for the rows it serves. The
-- pc_id order is the primary key's.
CREATE INDEX agents_list_hostname ON agents (ifnull(hostname, ''), pc_id, last_heartbeat, os_family, agent_version);
CREATE INDEX agents_list_os ON agents (ifnull(os_family, ''), pc_id, last_heartbeat, agent_version, hostname);
CREATE INDEX agents_list_version ON agents (ifnull(agent_version, ''), pc_id, last_heartbeat, os_family, hostname);
CREATE INDEX agents_list_heartbeat ON agents (last_heartbeat, pc_id, os_family, agent_version, hostname);

-- An OS or version filter with another sort: the filter is the prefix,
-- the sort the rest, so a rare OS or version is a direct search instead of
-- a walk past every other agent. (OS with the OS sort, version with the
-- version sort and either with the pc_id sort use the sort indexes above:
-- equal values leave pc_id as the order.)
CREATE INDEX agents_list_os_hostname ON agents (ifnull(os_family, ''), ifnull(hostname, ''), pc_id);
CREATE INDEX agents_list_os_version ON agents (ifnull(os_family, ''), ifnull(agent_version, ''), pc_id);
CREATE INDEX agents_list_os_heartbeat ON agents (ifnull(os_family, ''), last_heartbeat, pc_id);
CREATE INDEX agents_list_version_hostname ON agents (ifnull(agent_version, ''), ifnull(hostname, ''), pc_id);
CREATE INDEX agents_list_version_os ON agents (ifnull(agent_version, ''), ifnull(os_family, ''), pc_id);
CREATE INDEX agents_list_version_heartbeat ON agents (ifnull(agent_version, ''), last_heartbeat, pc_id);
