#include "specula/spec/draft_policy.h"

namespace specula {

Result<std::unique_ptr<DraftPolicy>> MakeDraftPolicy(const std::string& name, int max_k) {
  if (name == "fixed") return std::unique_ptr<DraftPolicy>(std::make_unique<FixedPolicy>(max_k));
  if (name == "adaptive") {
    AdaptivePolicy::Options o;
    o.max_k = max_k;
    return std::unique_ptr<DraftPolicy>(std::make_unique<AdaptivePolicy>(o));
  }
  if (name == "auto") {
    return std::unique_ptr<DraftPolicy>(
        std::make_unique<CostAwarePolicy>(CostAwarePolicy::Options{.max_k = max_k}));
  }
  return Error("draft_policy: expected fixed, adaptive or auto (got '" + name + "')");
}

}  // namespace specula
