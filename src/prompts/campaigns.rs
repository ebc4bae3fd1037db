//! A/B campaigns: two or more prompt versions share a campaign's submissions in
//! proportion to their weights (smooth weighted round-robin, [`stats::assign`]),
//! until the target count; the report compares them and names a winner by the
//! rule in [`stats`]. A slot is taken in the same atomic update that counts it,
//! so concurrent submitters (on any node) never get the same slot.

use serde::Deserialize;

use super::library::{CAMPAIGNS, Library};
use super::model::{Campaign, CampaignState, PromptRef, Variant};
use super::stats::{self, CampaignReport};
use super::{LibraryError, check_name, decode, encode, parse_ref};
use crate::docs::Write;

const MAX_VARIANTS: usize = 16;
const MAX_WEIGHT: u32 = 100;

/// A new campaign (`POST /api/v1/campaigns`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CampaignDraft {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// `name@version` (a bare name: its latest version now), with weights.
    pub variants: Vec<Variant>,
    /// Submissions in all (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<u64>,
    /// Ratings each variant needs before a winner is named (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_ratings: Option<u64>,
    /// `running` (default) or `draft`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<CampaignState>,
}

impl Library {
    /// Every campaign, by name.
    pub async fn campaigns(&self) -> Result<Vec<Campaign>, LibraryError> {
        self.docs
            .list(CAMPAIGNS)
            .await?
            .iter()
            .map(|(_, raw)| decode(raw))
            .collect()
    }

    pub async fn campaign(&self, name: &str) -> Result<Campaign, LibraryError> {
        let raw = self.docs.get(CAMPAIGNS, name).await?;
        raw.map(|r| decode(&r))
            .transpose()?
            .ok_or_else(|| LibraryError::NotFound(format!("no campaign {name:?}")))
    }

    /// Checks a draft and pins each variant to a version.
    async fn check_campaign(&self, draft: CampaignDraft) -> Result<Campaign, LibraryError> {
        check_name("name", &draft.name)?;
        if !(2..=MAX_VARIANTS).contains(&draft.variants.len()) {
            return Err(LibraryError::invalid(
                "variants",
                format!("a campaign compares 2 to {MAX_VARIANTS} prompt versions"),
            ));
        }
        let mut variants = Vec::new();
        for (i, v) in draft.variants.iter().enumerate() {
            let field = format!("variants[{i}].prompt");
            let (prompt, version) = self.resolve(&field, &v.prompt).await?;
            let pinned = format!("{}@{version}", prompt.name);
            if variants.iter().any(|x: &Variant| x.prompt == pinned) {
                return Err(LibraryError::invalid(field, format!("{pinned} is listed twice")));
            }
            if !(1..=MAX_WEIGHT).contains(&v.weight) {
                return Err(LibraryError::invalid(
                    format!("variants[{i}].weight"),
                    format!("must be 1..={MAX_WEIGHT}"),
                ));
            }
            variants.push(Variant {
                prompt: pinned,
                weight: v.weight,
            });
        }
        let target = draft.target.unwrap_or(100);
        if !(1..=1_000_000).contains(&target) {
            return Err(LibraryError::invalid("target", "must be 1..=1000000"));
        }
        let min_ratings = draft.min_ratings.unwrap_or(10);
        if !(1..=100_000).contains(&min_ratings) {
            return Err(LibraryError::invalid("min_ratings", "must be 1..=100000"));
        }
        let state = draft.state.unwrap_or(CampaignState::Running);
        if state == CampaignState::Completed {
            return Err(LibraryError::invalid(
                "state",
                "a new campaign is `draft` or `running`",
            ));
        }
        Ok(Campaign {
            name: draft.name,
            description: draft.description,
            variants,
            target,
            min_ratings,
            state,
            assigned: 0,
            created_ms: self.clock.now_ms(),
        })
    }

    /// Creates a campaign.
    pub async fn create_campaign(&self, draft: CampaignDraft) -> Result<Campaign, LibraryError> {
        let campaign = self.check_campaign(draft).await?;
        let raw = encode(&campaign)?;
        let name = campaign.name.clone();
        self.docs
            .update(CAMPAIGNS, &name.clone(), move |old| match old {
                Some(_) => Err(LibraryError::Conflict(format!(
                    "a campaign named {name:?} exists"
                ))),
                None => Ok((Write::Put(raw.clone()), ())),
            })
            .await?;
        Ok(campaign)
    }

    /// An imported campaign definition, created as a draft unless one of that name
    /// exists (then left alone); whether it was created.
    pub(super) async fn import_campaign(&self, c: Campaign) -> Result<bool, LibraryError> {
        let campaign = self
            .check_campaign(CampaignDraft {
                name: c.name,
                description: c.description,
                variants: c.variants,
                target: Some(c.target),
                min_ratings: Some(c.min_ratings),
                state: Some(CampaignState::Draft),
            })
            .await?;
        let campaign = Campaign {
            created_ms: c.created_ms,
            ..campaign
        };
        let raw = encode(&campaign)?;
        self.docs
            .update(CAMPAIGNS, &campaign.name, move |old| match old {
                Some(_) => Ok((Write::Keep, false)),
                None => Ok((Write::Put(raw.clone()), true)),
            })
            .await
    }

    /// Starts (`running`) or stops (`completed`) a campaign.
    pub async fn set_campaign_state(
        &self,
        name: &str,
        state: CampaignState,
    ) -> Result<Campaign, LibraryError> {
        let missing = name.to_owned();
        self.docs
            .update(CAMPAIGNS, name, move |old| {
                let old = old.ok_or_else(|| LibraryError::NotFound(format!("no campaign {missing:?}")))?;
                let mut c: Campaign = decode(old)?;
                match (c.state, state) {
                    (_, CampaignState::Draft) if c.assigned > 0 => {
                        return Err(LibraryError::Conflict(format!(
                            "campaign {missing:?} has taken {} submissions; it cannot go back to draft",
                            c.assigned
                        )));
                    }
                    (_, CampaignState::Running) if c.assigned >= c.target => {
                        return Err(LibraryError::Conflict(format!(
                            "campaign {missing:?} has reached its target of {}",
                            c.target
                        )));
                    }
                    _ => c.state = state,
                }
                Ok((Write::Put(encode(&c)?), c))
            })
            .await
    }

    pub async fn delete_campaign(&self, name: &str) -> Result<(), LibraryError> {
        let missing = name.to_owned();
        self.docs
            .update(CAMPAIGNS, name, move |old| match old {
                Some(_) => Ok((Write::Delete, ())),
                None => Err(LibraryError::NotFound(format!("no campaign {missing:?}"))),
            })
            .await
    }

    /// Takes the next slot of running campaign `name`: the prompt version the
    /// submission runs. The campaign completes with its last slot.
    pub async fn assign(&self, field: &str, name: &str) -> Result<PromptRef, LibraryError> {
        check_name(field, name)?;
        let (field, missing) = (field.to_owned(), name.to_owned());
        let variant = self
            .docs
            .update(CAMPAIGNS, name, move |old| {
                let old = old.ok_or_else(|| LibraryError::invalid(&field, format!("no campaign {missing:?}")))?;
                let mut c: Campaign = decode(old)?;
                if c.state != CampaignState::Running {
                    return Err(LibraryError::Conflict(format!(
                        "campaign {missing:?} is {} ({} of {} submissions taken); it takes submissions while running",
                        c.state, c.assigned, c.target
                    )));
                }
                let weights: Vec<u32> = c.variants.iter().map(|v| v.weight).collect();
                let chosen = c.variants[stats::assign(&weights, c.assigned)].prompt.clone();
                c.assigned += 1;
                if c.assigned >= c.target {
                    c.state = CampaignState::Completed;
                }
                Ok((Write::Put(encode(&c)?), chosen))
            })
            .await?;
        let (prompt, version) = parse_ref("variant", &variant)?;
        Ok(PromptRef {
            name: prompt,
            version: version.unwrap_or(1),
            campaign: Some(name.to_owned()),
        })
    }

    /// The campaign with each variant's figures (from its recorded runs) and the
    /// winner, if there is one yet.
    pub async fn report(&self, name: &str) -> Result<CampaignReport, LibraryError> {
        let campaign = self.campaign(name).await?;
        let mut runs = Vec::new();
        for v in &campaign.variants {
            let (prompt, version) = parse_ref("variant", &v.prompt)?;
            let mine = self
                .runs(&prompt)
                .await?
                .into_iter()
                .filter(|r| r.campaign.as_deref() == Some(name) && Some(r.version) == version)
                .collect();
            runs.push(mine);
        }
        Ok(stats::report(&campaign, &runs))
    }
}
