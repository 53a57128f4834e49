//! `GET /deployments/{name}/variables` (director-api §5.3, `bosh variables`): the ids and
//! absolute names the deployment's variable sets pin, never values.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};

use super::AppState;
use super::deployments::deployment_not_found;
use crate::config_server::{VariableRef, deployment_variable_list};
use crate::deployments;
use crate::error::ApiError;

pub fn routes() -> Router<AppState> {
    Router::new().route("/deployments/{name}/variables", get(deployment_variables))
}

async fn deployment_variables(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Vec<VariableRef>>, ApiError> {
    if deployments::deployment_fetch(&state.db, &name)
        .await?
        .is_none()
    {
        return Err(deployment_not_found(&name));
    }
    Ok(Json(deployment_variable_list(&state.db, &name).await?))
}
