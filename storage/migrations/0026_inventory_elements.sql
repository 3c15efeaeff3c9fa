-- Per PC, job and derived table: a digest of each array element its stored
-- rows came from (storage/inventory_elements.go). A report whose set
-- changed is then diffed element by element: only the elements whose text
-- is new are typed, and only their keys' stored rows read, instead of
-- typing all 150 apps, reading the PC's 150 rows and comparing them. A
-- rowid table: the blob (16 bytes an element) stays on its row's page.
CREATE TABLE inventory_elements (
    pc_id   TEXT NOT NULL,
    job_id  TEXT NOT NULL,
    tbl     TEXT NOT NULL,
    digests BLOB NOT NULL,
    PRIMARY KEY (pc_id, job_id, tbl)
);
