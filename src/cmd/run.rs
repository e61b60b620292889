use super::ConfigArgs;
use steadyface::Error;

pub fn run(c: ConfigArgs) -> Result<(), Error> {
    steadyface::daemon::serve(c.config, c.set).map(drop)
}
