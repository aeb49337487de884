//! Query streams over a real PostgreSQL: rows of declared queries as alerts through a real
//! gateway process, compared with `psql` on the same database.

use alertmesh_tests::Postgres;

#[tokio::test]
async fn postgres_fixture_serves_a_fresh_cluster_and_restarts() -> anyhow::Result<()> {
    let Some(mut pg) = Postgres::start_or_skip().await? else {
        return Ok(());
    };
    pg.psql("create table t (id bigint primary key); insert into t values (9223372036854775807)")?;
    assert_eq!(pg.psql("select id from t")?.trim(), "9223372036854775807");
    pg.stop().await?;
    assert!(pg.psql("select 1").is_err(), "a stopped server answers");
    pg.start().await?;
    assert_eq!(pg.psql("select count(*) from t")?.trim(), "1");
    Ok(())
}
