#include "common/data/job_data.h"

#include <algorithm>

namespace pstrain {

StatusOr<JobData> LoadJobData(const DataConfig& data) {
  JobData d;
  if (data.format == "idx") {
    ASSIGN_OR_RETURN(d.train, ReadIdxDataset(data.train_images, data.train_labels));
    ASSIGN_OR_RETURN(d.test, ReadIdxDataset(data.test_images, data.test_labels));
  } else if (data.format == "libsvm") {
    LibsvmOptions o;
    o.features = data.features;
    ASSIGN_OR_RETURN(d.train, ReadLibsvmDataset(data.train, o));
    ASSIGN_OR_RETURN(d.test, ReadLibsvmDataset(data.test, o));
  } else {
    CsvOptions o;
    o.label_column = data.label_column;
    o.header = data.header;
    ASSIGN_OR_RETURN(d.train, ReadCsvDataset(data.train, o));
    ASSIGN_OR_RETURN(d.test, ReadCsvDataset(data.test, o));
  }
  if (data.image_shape.known()) {
    for (Dataset* set : {&d.train, &d.test}) {
      if (data.image_shape.size() != set->dim) {
        return InvalidArgument("data.image_shape " + data.image_shape.Text() + " has " +
                               std::to_string(data.image_shape.size()) + " values but " +
                               set->source + " has " + std::to_string(set->dim) +
                               " features per sample");
      }
      set->shape = data.image_shape;
    }
  }
  RETURN_IF_ERROR(ReconcileDatasets(&d.train, &d.test));
  return d;
}

SparseOptions SparseOptionsOf(const JobConfig& config, const JobData* data) {
  SparseOptions o;
  o.enabled = config.data.format == "libsvm";
  o.wide = config.wide;
  if (data != nullptr && o.enabled) {
    o.max_active = std::max({1, data->train.max_active, data->test.max_active});
  }
  return o;
}

HandoutPlan EpochPlan(const JobConfig& config, int epoch, int64_t samples) {
  return HandoutPlan::Make(config.data.handout, config.seed, epoch, samples, config.batch_size,
                           config.cluster.workers, config.data.shard_weights);
}

}  // namespace pstrain
